"""Faults (issue 8): the daemon killed with -9 during writes, the embedded
backend on a full disk, the NATS server frozen with SIGSTOP.  Every test is
bounded in time (waits poll with deadlines), uses real processes on
loopback, and leaves no mount, process or tmpfs behind.

What users can rely on: a value whose fsync() returned survives kill -9 of
the daemon; a full disk gives ENOSPC and keeps existing values readable; a
frozen server makes fsync() fail within its timeout while reads keep
answering from the local replica and writes queue until the server is back.
"""
import errno
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import Backend
from natsfixtures import fsync_errno, saved, shows, status
from util import read, wait_until, write

FSYNC_TIMEOUT = 10.0  # CONATFS_FSYNC_TIMEOUT_MS
DEADLINE_JOIN = 10.0


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs, unmounted at the end (after the daemons, which depend on it)."""
    path = tmp_path / "small"
    os.makedirs(path)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        res = subprocess.run(["umount", str(path)], capture_output=True, text=True)
        if res.returncode != 0:
            subprocess.run(["umount", "-l", str(path)])
            raise AssertionError(f"umount {path}: {res.stderr}")


@pytest.fixture(params=["embedded"])
def backend(request, tmp_path):
    """embedded (default), nats (a `nats` server) or tmpfs (embedded on small_disk)."""
    if request.param == "nats":
        server = request.getfixturevalue("nats")
        return Backend("nats", ["--server", server.url])
    if request.param == "tmpfs":
        data = request.getfixturevalue("small_disk") / "data"
        return Backend("embedded", ["--data", str(data)], data)
    data = tmp_path / "data"
    return Backend("embedded", ["--data", str(data)], data)


def integrity_check(data):
    res = subprocess.run(["sqlite3", str(data / "conat.db"), "PRAGMA integrity_check;"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stdout + res.stderr


# -------------------------------------------- 4. kill -9 of the daemon

class Writer(threading.Thread):
    """Writes k0..k19 over and over with fsync; remembers per key the last
    value whose fsync returned and every value tried after it."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d = d
        self.synced = {}  # key -> last fsynced value
        self.later = {}   # key -> values tried after it
        self.count = 0
        self.error = None

    def run(self):
        i = 0
        try:
            while True:
                key, value = f"k{i % 20}", f"value {i} ".encode() * (1 + i % 7)
                self.later.setdefault(key, set()).add(value)
                fd = os.open(f"{self.d}/{key}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                try:
                    os.write(fd, value)
                    os.fsync(fd)
                    self.synced[key] = value
                    self.later[key] = set()
                    self.count += 1
                finally:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                i += 1
        except OSError as e:  # the daemon is gone: ENOTCONN (or ECONNABORTED)
            self.error = e


@pytest.mark.parametrize("backend", ["embedded", "nats"], indirect=True)
def test_kill_9_during_writes_keeps_every_fsynced_value(mount_factory, backend):
    m = mount_factory()
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    writer = Writer(d)
    writer.start()
    wait_until(lambda: writer.count >= 50, what="some fsynced writes")
    m.kill()
    writer.join(DEADLINE_JOIN)
    assert not writer.is_alive(), "a writer hangs on the dead mount"
    assert writer.error is not None and writer.error.errno in (errno.ENOTCONN,
                                                               errno.ECONNABORTED)
    if backend.name == "embedded":
        integrity_check(backend.data)

    m2 = mount_factory(mountpoint=m.path)  # clears the stale mount
    assert "stale mount" in m2.stderr
    for key, value in writer.synced.items():
        got = read(f"{d}/{key}", "rb")
        assert got == value or got in writer.later[key], (key, got[:40])
    m2.unmount()
    if backend.name == "embedded":
        integrity_check(backend.data)


# ------------------------------------------------------- 5. a full disk

def fill(path):
    """Writes PATH until the disk is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096) > 0:
            pass
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)


def write_errno(path, data):
    """Writes DATA to PATH with close and fsync: 0 or the first errno."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    except OSError as e:
        return e.errno
    try:
        os.write(fd, data)
        os.fsync(fd)
    except OSError as e:
        try:
            os.close(fd)
        except OSError:
            pass
        return e.errno
    try:
        os.close(fd)
    except OSError as e:
        return e.errno
    return 0


@pytest.mark.parametrize("backend", ["tmpfs"], indirect=True)
def test_full_disk_gives_enospc_and_recovers(mount_factory, backend, small_disk):
    m = mount_factory(allow=[r"[Ff]ull|[Ss]pace|SQLITE|disk"])
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    old = {f"old{i}": f"existing {i}\n".encode() * 100 for i in range(10)}
    for k, v in old.items():
        write(f"{d}/{k}", v, "wb")
    assert fsync_errno(f"{d}/old0") == 0
    filler = small_disk / "filler"
    try:
        fill(filler)
    except BaseException:
        os.unlink(filler)
        raise
    big = os.urandom(256 * 1024)
    errs = [write_errno(f"{d}/new{i}", big) for i in range(4)]
    assert errno.ENOSPC in errs and set(errs) <= {0, errno.ENOSPC}, errs
    for k, v in old.items():  # existing values stay readable
        assert read(f"{d}/{k}", "rb") == v
    os.unlink(filler)
    assert write_errno(f"{d}/after", big) == 0
    assert read(f"{d}/after", "rb") == big
    write(f"{d}/old0", "changed")
    assert read(f"{d}/old0") == "changed"
    m.unmount()
    integrity_check(backend.data)


# ------------------------------------------------- 3. a frozen server

@pytest.mark.parametrize("backend", ["nats"], indirect=True)
def test_sigstop_server_reads_answer_writes_queue(mount_factory, backend, nats):
    a, b = mount_factory(), mount_factory()
    da, db = (os.path.join(m.path, "project-1", "frozen") for m in (a, b))
    os.makedirs(da)
    for i in range(5):
        write(f"{da}/old{i}", f"before {i}")
    wait_until(lambda: saved(a), what="a to save")
    wait_until(lambda: shows(f"{db}/old4", b"before 4"), what="the values on b")
    nats.proc.send_signal(signal.SIGSTOP)
    try:
        start = time.monotonic()
        for i in range(5):  # reads answer from the replica
            assert read(f"{da}/old{i}") == f"before {i}"
            assert read(f"{db}/old{i}") == f"before {i}"
        values = {f"new{i}": f"while frozen {i}".encode() for i in range(10)}
        for k, v in values.items():  # writes queue: close succeeds
            write(f"{da}/{k}", v, "wb")
        assert read(f"{da}/new3") == "while frozen 3"
        t0 = time.monotonic()
        assert fsync_errno(f"{da}/new0") in (errno.EIO, errno.ETIMEDOUT)
        assert time.monotonic() - t0 < FSYNC_TIMEOUT + 5  # bounded, not hung
        assert status(a)["pending"] > 0
        os.listdir(da)  # nothing hangs
        time.sleep(max(0.0, 10.0 - (time.monotonic() - start)))
    finally:
        nats.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: saved(a), timeout=60, what="a's queue to drain")
    for k, v in values.items():
        wait_until(lambda: shows(f"{db}/{k}", v), timeout=30, what=f"{k} on b")
    assert fsync_errno(f"{da}/new0") == 0
