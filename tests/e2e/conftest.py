"""Fixtures for end-to-end tests of the conatfs daemon.

`mount` starts a daemon in the foreground on a fresh mountpoint, waits until
the mount is up (while checking that the daemon has not died), and at the end
unmounts with `fusermount3 -u` and demands that the daemon exits 0. The
daemon's stderr is part of the verdict: a WARNING or CRITICAL line fails the
test unless the test allowed it. Every test leaves no mount and no process.

The backend is chosen by the `backend` fixture (only "embedded" for now); a
NATS fixture can add a parameter that returns its own daemon arguments.
"""
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from util import CONATFS, DEADLINE, wait_until
from natsfixtures import nats, nats_cluster, nats_options, no_nats_left  # noqa: F401 (fixtures)


def conatfs_mounts():
    with open("/proc/self/mounts") as f:
        return [line.split()[1] for line in f if line.split()[2] == "fuse.conatfs"]


def conatfs_processes():
    """PIDs of running processes of the daemon binary under test."""
    pids = []
    real = os.path.realpath(CONATFS)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{entry}/exe")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if exe == real and state != "Z":
            pids.append(int(entry))
    return pids


def lazy_unmount(path):
    subprocess.run(["fusermount3", "-uz", path], stderr=subprocess.DEVNULL)


class Daemon:
    """One conatfs process serving PATH."""

    def __init__(self, path, args, stderr_path, allow):
        self.path = str(path)
        self.args = args
        self.stderr_path = stderr_path
        self.allow = list(allow)
        self.expect_exit = 0
        with open(stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)

    @property
    def stderr(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def wait_mounted(self):
        end = time.monotonic() + DEADLINE
        while not os.path.ismount(self.path):
            if self.proc.poll() is not None:
                raise AssertionError(f"conatfs exited with {self.proc.returncode} before "
                                     f"mounting:\n{self.stderr}")
            if time.monotonic() > end:
                raise AssertionError(f"conatfs did not mount in time:\n{self.stderr}")
            time.sleep(0.01)

    def unmount(self):
        """fusermount3 -u, then the daemon must exit 0.  EBUSY is retried
        until the deadline: while the daemon's inotify echo of a remote
        change runs through the mount, the mount is busy (fs/echo.c)."""
        result = []

        def unmounted():
            res = subprocess.run(["fusermount3", "-u", self.path], capture_output=True, text=True)
            result[:] = [res]
            return res.returncode == 0 or "busy" not in res.stderr

        wait_until(unmounted, what=f"{self.path} to be unmounted (EBUSY)")
        assert result[0].returncode == 0, f"fusermount3 -u failed: {result[0].stderr}"
        self.wait_exit()

    def stop(self, signum=signal.SIGTERM):
        self.proc.send_signal(signum)
        self.wait_exit()

    def kill(self):
        """SIGKILL: the mount stays behind (ENOTCONN) for the next start to clear."""
        self.proc.kill()
        self.proc.wait(DEADLINE)
        self.expect_exit = -signal.SIGKILL

    def wait_exit(self):
        try:
            code = self.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"conatfs did not exit:\n{self.stderr}")
        assert code == self.expect_exit, f"conatfs exited with {code}:\n{self.stderr}"
        assert not os.path.ismount(self.path)

    def unexpected_stderr(self):
        bad = re.compile(r"WARNING|CRITICAL|ERROR|AddressSanitizer|runtime error")
        return [line for line in self.stderr.splitlines()
                if bad.search(line) and not any(re.search(a, line) for a in self.allow)]

    def cleanup(self):
        """On error: lazy unmount, terminate, kill."""
        if self.proc.poll() is None:
            lazy_unmount(self.path)
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Backend:
    """How daemons of one test reach their data: the same for every start
    within the test, so a restarted daemon sees what the last one saved."""

    def __init__(self, name, args, data=None):
        self.name = name
        self.args = args
        self.data = data  # the embedded data directory


@pytest.fixture(params=["embedded"])
def backend(request, tmp_path):
    if request.param == "embedded":
        data = tmp_path / "data"
        return Backend("embedded", ["--data", str(data)], data)
    raise NotImplementedError(request.param)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts_connections(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def nats_server(tmp_path):
    """A real nats-server with JetStream on a free loopback port, in a
    temporary directory; yields its URL and is stopped by its pid."""
    port = free_port()
    store = tmp_path / "nats"
    with open(tmp_path / "nats.log", "wb") as log:
        proc = subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port),
                                 "-sd", str(store)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: proc.poll() is not None or accepts_connections(port),
                   what="nats-server to listen")
        assert proc.poll() is None, (tmp_path / "nats.log").read_text()
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(DEADLINE)


class MountFactory:
    def __init__(self, tmp_path, backend):
        self.tmp_path = tmp_path
        self.backend = backend
        self.daemons = []

    def __call__(self, options=(), allow=(), mountpoint=None, extra=()):
        """Starts a daemon; returns it once mounted.  A test that restarts
        passes the previous daemon's mountpoint."""
        n = len(self.daemons)
        path = mountpoint or self.tmp_path / f"mnt{n}"
        if mountpoint is None:
            os.makedirs(path)
        args = [CONATFS, "-f", *self.backend.args, *extra]
        for o in options:
            args += ["-o", o]
        args.append(str(path))
        daemon = Daemon(path, args, self.tmp_path / f"stderr{n}.txt", allow)
        self.daemons.append(daemon)
        daemon.wait_mounted()
        return daemon

    def finish(self):
        problems = []
        for d in self.daemons:
            try:
                if d.proc.poll() is None:
                    d.unmount()
            except AssertionError as e:
                problems.append(str(e))
            finally:
                d.cleanup()
            problems += [f"unexpected stderr of {d.path}: {line}"
                         for line in d.unexpected_stderr()]
        for path in {d.path for d in self.daemons}:
            if path in conatfs_mounts():  # left by a daemon killed with SIGKILL
                lazy_unmount(path)
        return problems


@pytest.fixture
def mount_factory(tmp_path, backend):
    factory = MountFactory(tmp_path, backend)
    yield factory
    problems = factory.finish()
    assert not problems, "\n".join(problems)


@pytest.fixture
def mount(mount_factory):
    """A running daemon (embedded backend) with .path, .proc, .stderr."""
    return mount_factory()


@pytest.fixture
def store(mount):
    """A fresh store directory in a fresh scope of MOUNT."""
    path = os.path.join(mount.path, "project-x", "settings")
    os.makedirs(path)
    return path


@pytest.fixture(autouse=True, scope="session")
def no_leftovers(tmp_path_factory):
    """No daemon of this build and no mount under this session's temporary
    directories is left (mounts of other runs on the machine are theirs)."""
    base = str(tmp_path_factory.getbasetemp())
    yield
    wait_until(lambda: not conatfs_processes(), what="every conatfs process to end")
    ours = [m for m in conatfs_mounts() if m.startswith(base + os.sep)]
    assert ours == [], "a conatfs mount is left"
