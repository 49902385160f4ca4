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
SETTLE = 30.0  # a cluster elects its leaders again after a node dies


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs, unmounted at the end (after the daemons, which depend on it)."""
    path = tmp_path / "small"
    os.makedirs(path)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path)], check=True)
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
    if request.param == "cluster":  # servers per mount (extra=); R3 buckets
        request.getfixturevalue("nats_cluster")
        return Backend("nats", ["--replicas", "3"])
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
    # Closed, maybe not saved yet when the disk fills: they must not be lost.
    old = {f"old{i}": f"existing {i}\n".encode() * 100 for i in range(10)}
    for k, v in old.items():
        write(f"{d}/{k}", v, "wb")
    filler = small_disk / "filler"
    try:
        fill(filler)
    except BaseException:
        os.unlink(filler)
        raise
    new = {f"new{i}": os.urandom(256 * 1024) for i in range(4)}
    errs = [write_errno(f"{d}/{k}", v) for k, v in new.items()]
    assert errno.ENOSPC in errs and set(errs) <= {0, errno.ENOSPC}, errs
    for k, v in {**old, **new}.items():  # everything stays readable, queued
        assert read(f"{d}/{k}", "rb") == v
    assert status(m)["pending"] > 0
    os.unlink(filler)
    big = os.urandom(256 * 1024)
    assert write_errno(f"{d}/after", big) == 0
    wait_until(lambda: saved(m), what="the queue to drain once space is freed")
    write(f"{d}/old0", "changed")
    assert read(f"{d}/old0") == "changed"
    m.unmount()
    integrity_check(backend.data)
    m2 = mount_factory(mountpoint=m.path)  # nothing was lost on the way
    got = {k: read(f"{d}/{k}", "rb") for k in [*old, *new, "after"]}
    assert got == {**old, "old0": b"changed", **new, "after": big}
    m2.unmount()


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


# ------------------------------------ 1. kill -9 of the server under load

# Issue 8's 10,000 sets (a few seconds with the outage).
SETS = 10000
SYNC_EVERY = 50  # every 50th set of a writer is fsynced


class LoadWriter(threading.Thread):
    """N sets of keys PREFIX0..PREFIX99 in D; the last value of each key,
    and what was fsynced before the server was killed."""

    def __init__(self, d, prefix, n):
        super().__init__(daemon=True)
        self.d, self.prefix, self.n = d, prefix, n
        self.last = {}
        self.synced = {}
        self.fsync_errors = set()
        self.done = 0
        self.error = None

    def run(self):
        try:
            for i in range(self.n):
                key, value = f"{self.prefix}{i % 100}", f"{self.prefix} set {i}".encode()
                fd = os.open(f"{self.d}/{key}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                try:
                    os.write(fd, value)
                    self.last[key] = value
                    if i % SYNC_EVERY == 0:
                        try:
                            os.fsync(fd)
                            self.synced[key] = value
                        except OSError as e:  # the server is down: not saved yet
                            self.fsync_errors.add(e.errno)
                finally:
                    os.close(fd)
                self.done = i + 1
        except BaseException as e:
            self.error = e


@pytest.mark.parametrize("backend", ["nats"], indirect=True)
def test_kill_9_server_under_write_load(mount_factory, backend, nats):
    a, b = mount_factory(), mount_factory()
    da, db = (os.path.join(m.path, "project-1", "load") for m in (a, b))
    os.makedirs(da)
    wait_until(lambda: os.path.isdir(db), what="the store on b")
    writers = [LoadWriter(da, "a", SETS // 2), LoadWriter(db, "b", SETS // 2)]
    for w in writers:
        w.start()
    wait_until(lambda: all(w.done >= SETS // 8 for w in writers), timeout=60,
               what="a part of the load")
    nats.proc.kill()  # kill -9
    nats.stop()       # only reaps it
    synced_before = [dict(w.synced) for w in writers]
    time.sleep(2)     # writes meanwhile are queued
    nats.start()
    nats.wait_ready()
    for w in writers:
        w.join(120)
        assert not w.is_alive(), "a writer hangs"
        assert w.error is None, repr(w.error)
        assert w.fsync_errors <= {errno.EIO, errno.ETIMEDOUT}, w.fsync_errors
    wait_until(lambda: saved(a) and saved(b), timeout=60, what="both mounts to save")
    last = {**writers[0].last, **writers[1].last}
    c = mount_factory()  # a fresh mount reads what the server has
    dc = os.path.join(c.path, "project-1", "load")
    for d in (da, db, dc):
        wait_until(lambda: sorted(os.listdir(d)) == sorted(last), timeout=30,
                   what=f"every key in {d}")
        for key, value in last.items():
            wait_until(lambda: shows(f"{d}/{key}", value), what=f"{key} in {d}")
    # Every value fsynced before the kill was saved: each key's value now is
    # that one or a later one of the same writer.
    for w, before in zip(writers, synced_before):
        for key, value in before.items():
            got = int(read(f"{dc}/{key}").rsplit(" ", 1)[1])
            assert got >= int(value.decode().rsplit(" ", 1)[1]), (key, got, value)


# ------------------------------- 2. the node of a mount in a cluster dies

def settled_shows(path, value):
    """shows(), but a node still catching up may time out a first lookup."""
    try:
        return shows(path, value)
    except TimeoutError:
        return False


def conatfs_connections(node):
    connz = node.monitor("/connz") or {"connections": []}
    return sum(c.get("name") == "conatfs" for c in connz["connections"])


@pytest.mark.parametrize("backend", ["cluster"], indirect=True)
def test_cluster_node_of_a_mount_killed_and_back(mount_factory, backend, nats_cluster):
    nodes = nats_cluster.nodes
    a = mount_factory(extra=["--server", ",".join(nats_cluster.urls)])
    a_node = wait_until(lambda: next((n for n in nodes if conatfs_connections(n)), None),
                        what="a's connection")
    others = [n for n in nodes if n is not a_node]
    b = mount_factory(extra=["--server", others[0].url])
    da, db = (os.path.join(m.path, "project-1", "r3") for m in (a, b))
    os.makedirs(da)
    values = {f"before{i}": f"before {i}".encode() for i in range(20)}
    for k, v in values.items():
        write(f"{da}/{k}", v, "wb")
    assert fsync_errno(f"{da}/before0") == 0
    # b opens the store now: while the cluster elects new leaders, only an
    # open store answers (from its replica) without the server.
    wait_until(lambda: shows(f"{db}/before19", b"before 19"), what="the values on b")
    a_node.proc.kill()  # kill -9
    a_node.stop()
    for i in range(20):  # a keeps reading and writing
        assert read(f"{da}/before{i}", "rb") == values[f"before{i}"]
        values[f"during{i}"] = f"during {i}".encode()
        write(f"{da}/during{i}", values[f"during{i}"], "wb")
    wait_until(lambda: saved(a), timeout=SETTLE, what="a to reconnect and save")
    assert conatfs_connections(others[0]) + conatfs_connections(others[1]) == 2
    values["from-b"] = b"b"
    write(f"{db}/from-b", "b")
    a_node.start()
    a_node.wait_ready(cluster_size=3, timeout=60)
    for i in range(10):
        values[f"after{i}"] = f"after {i}".encode()
        write(f"{da}/after{i}", values[f"after{i}"], "wb")
    wait_until(lambda: saved(a) and saved(b), timeout=SETTLE, what="both to save")
    c = mount_factory(extra=["--server", a_node.url])  # the node that came back
    dc = os.path.join(c.path, "project-1", "r3")
    for d in (da, db, dc):
        for k, v in values.items():
            wait_until(lambda: settled_shows(f"{d}/{k}", v), timeout=SETTLE,
                       what=f"{k} in {d}")
        assert sorted(os.listdir(d)) == sorted(values)
