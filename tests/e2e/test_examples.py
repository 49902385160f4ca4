"""The examples in examples/ run and do what their header says.

The shell and Node.js examples use two mounts of one nats-server (as two
machines would)."""
import os
import subprocess

import pytest

from conftest import Backend
from natsfixtures import settle_echoes  # noqa: F401 (fixture)
from util import wait_until

EXAMPLES = os.path.join(os.environ["SOURCE_ROOT"], "examples")
NODE_PATH = os.path.join(os.environ["SOURCE_ROOT"], "tests", "interop", "node_modules")


@pytest.fixture
def backend(nats_server):
    return Backend("nats", ["--server", nats_server])


@pytest.fixture
def two(mount_factory, settle_echoes):
    return mount_factory(), mount_factory()


def example(name, *args, **kwargs):
    return subprocess.run([os.path.join(EXAMPLES, name), *map(str, args)], capture_output=True,
                          text=True, timeout=90, **kwargs)


def test_hello_dkv(tmp_path):
    proc = subprocess.run([os.environ["HELLO_DKV"], str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "theme is saved at revision 1" in proc.stdout
    assert "change: theme = dark (our own echo)" in proc.stdout
    assert 'message: {"hello":1}' in proc.stdout
    assert proc.stderr == ""


def test_cursor_feed(two):
    a, b = two
    proc = example("cursor-feed.sh", a.path, b.path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:3] == ['{"user":"alice","line":%d}' % n for n in (3, 7, 12)]


def test_build_coordinator(two):
    a, b = two
    proc = example("build-coordinator.sh", a.path, b.path)
    assert proc.returncode == 0, proc.stderr
    assert "B saw: claimed by machine-a, ok: 42 tests passed" in proc.stdout


def test_settings_sync(two):
    a, b = two
    proc = example("settings-sync.sh", a.path, b.path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == 'B reloaded: {"theme":"light","font":12}'


def test_chat(two):
    a, b = two
    bob = subprocess.Popen([os.path.join(EXAMPLES, "chat.sh"), b.path, "bob"],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: os.path.exists(os.path.join(b.path, "hub", "@chat")),
                   what="bob to join")
        alice = example("chat.sh", a.path, "alice", input="hello from alice\n")
        assert alice.returncode == 0, alice.stderr
        assert bob.stdout.readline() == "alice: hello from alice\n"
        bob.stdin.write("hi alice\n")
        bob.stdin.flush()
        assert bob.stdout.readline() == "bob: hi alice\n"   # self-echo
    finally:
        bob.stdin.close()
        bob.wait(timeout=30)
    assert bob.returncode == 0


def test_interop_js(mount_factory, nats_server, settle_echoes):
    m = mount_factory()
    proc = subprocess.run(["node", os.path.join(EXAMPLES, "interop.js"), nats_server, m.path],
                          capture_output=True, text=True, timeout=90,
                          env={**os.environ, "NODE_PATH": NODE_PATH})
    assert proc.returncode == 0, proc.stderr
    assert "file from-node: written by nats.js" in proc.stdout
    assert "key from-files: written through the mount" in proc.stdout
