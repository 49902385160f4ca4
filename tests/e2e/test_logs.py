"""What a user sees of long work and trouble (issue 10): the loading of a
big store in `.conatfs/status` and in the log, one log line per change of
the NATS connection, one per rejected write naming the store and the key.

Big stores are filled behind the mount's back by the conat-kv helper (a
libconat client of the same data directory or NATS server), then a mount
opens them.  Every test runs on both backends unless it is about NATS.
"""
import errno
import os
import re
import threading

import pytest

from natsfixtures import embedded_or_nats, nats_only
from natsfixtures import settle_echoes  # noqa: F401 (fixture)
from natsfixtures import saved, status
from util import conat_kv, fails_with, run, wait_until, write

pytestmark = pytest.mark.usefixtures("settle_echoes")

BIG = 30000  # keys: over CONAT_LOAD_LOG_KEYS, so the load is logged


@pytest.fixture(params=["embedded", "nats"])
def backend(request, tmp_path):
    return embedded_or_nats(request, tmp_path)


def fill(backend, scope, store, n):
    """N keys key-0 ... into SCOPE/STORE, by another client (no mount running)."""
    target = backend.data if backend.name == "embedded" else backend.args[1]
    conat_kv(target, "fill", scope, store, str(n))


def store_entry(m, scope, store):
    """The store's entry in the status file, or None."""
    for entry in status(m)["stores"]:
        if entry["scope"] == scope and entry["store"] == store:
            return entry
    return None


def log_lines(m, pattern):
    return [line for line in m.stderr.splitlines() if re.search(pattern, line)]


def test_big_store_load_shows_in_status_and_log(backend, mount_factory):
    fill(backend, "proj", "big", BIG)
    m = mount_factory()
    path = os.path.join(m.path, "proj", "big")
    listed = []
    opener = threading.Thread(target=lambda: listed.extend(os.listdir(path)))
    opener.start()
    seen = []

    def loaded():
        entry = store_entry(m, "proj", "big")
        if entry is not None:
            seen.append(entry)
        return entry is not None and "loaded" in entry

    try:
        wait_until(loaded, timeout=60, what="the store to show as loaded")
    finally:
        opener.join(60)
    assert len(listed) == BIG
    assert seen[-1]["loaded"]["keys"] == BIG
    assert seen[-1]["loaded"]["ms"] >= 0
    for entry in seen:  # progress while it loaded, if a read caught it
        if "loading" in entry:
            assert 0 <= entry["loading"]["keys"] <= BIG
            assert entry["loading"]["of"] in (None, BIG)
    assert len(log_lines(m, rf"proj/big: loading {BIG} keys$")) == 1, m.stderr
    assert len(log_lines(m, rf"proj/big: loaded {BIG} keys in [0-9.]+ s$")) == 1, m.stderr


def test_small_store_load_is_quiet(backend, mount_factory):
    fill(backend, "proj", "small", 10)
    m = mount_factory()
    assert len(os.listdir(os.path.join(m.path, "proj", "small"))) == 10
    entry = store_entry(m, "proj", "small")
    assert entry["loaded"]["keys"] == 10
    if entry["loaded"]["ms"] < 1000:  # a slow load is logged even if small
        assert log_lines(m, "proj/small") == [], m.stderr


@nats_only
def test_connection_changes_log_one_line_each(nats, mount_factory):
    m = mount_factory()
    store = os.path.join(m.path, "proj", "settings")
    os.makedirs(store)
    write(f"{store}/theme", "dark")
    wait_until(lambda: saved(m), what="the value to be saved")

    nats.stop()
    wait_until(lambda: not status(m)["connected"], what="the mount to see the server gone")
    write(f"{store}/theme", "offline")
    nats.start()
    nats.wait_ready()
    wait_until(lambda: saved(m), timeout=30, what="the queued value to be saved")
    m.unmount()

    url = re.escape(nats.url)
    assert len(log_lines(m, rf"disconnected from NATS server {url}; reconnecting$")) == 1, \
        m.stderr
    assert len(log_lines(m, rf"reconnected to NATS server {url}$")) == 1, m.stderr
    assert len(log_lines(m, "NATS server")) == 2, m.stderr  # our own close is debug output


def test_rejected_writes_log_one_line_each(mount_factory):
    m = mount_factory()
    store = os.path.join(m.path, "proj", "odd\tstore")
    os.makedirs(store)
    run(f"setfattr -n user.conat.max_value_size -v 10 '{store}'")
    fails_with(f"bash -c 'echo 0123456789A > \"{store}/big\tkey\"'", errno.EFBIG)

    few = os.path.join(m.path, "proj", "few")
    os.makedirs(few)
    run(f"setfattr -n user.conat.max_keys -v 1 '{few}'")
    write(f"{few}/one", "1")
    fd = os.open(f"{few}/two", os.O_WRONLY | os.O_CREAT)
    os.write(fd, b"2")
    with pytest.raises(OSError) as e:
        os.close(fd)
    assert e.value.errno == errno.ENOSPC
    m.unmount()

    big = log_lines(m, "rejected")
    assert len(log_lines(m, r'proj/odd\\tstore: the write of key "big\\tkey" was rejected: '
                            r".*over the limit of 10 bytes")) == 1, m.stderr
    assert len(log_lines(m, r'proj/few: the write of key "two" was rejected')) == 1, m.stderr
    assert len(big) == 2, m.stderr
