"""Store options at the file level (issue 7): ephemeral stores, merge
strategies, limits, and the store's metadata, as xattrs of the store
directory; statfs and .conatfs/status.

  user.conat.ephemeral       1 | 0
  user.conat.merge           lww | lines | json          (else EINVAL)
  user.conat.max_value_size  bytes, 0 = no limit         (over it: EFBIG at write())
  user.conat.max_age         milliseconds, 0 = no limit  (older values go)
  user.conat.max_bytes       bytes, 0 = no limit         (over it: ENOSPC at close())
  user.conat.max_keys        keys, 0 = no limit          (over it: ENOSPC at close())
  user.conat.keys, .bytes    what the backend holds      (read-only)

The limits run on both backends; what needs two mounts or a server restart
runs on NATS (the `nats` fixture can stop and start its server).
"""
import errno
import json
import os

import pytest

from natsfixtures import embedded_or_nats, nats_only
from util import fails_with, read, run, wait_explained, wait_until, write


@pytest.fixture(params=["embedded", "nats"])
def backend(request, tmp_path):
    return embedded_or_nats(request, tmp_path)


def getfattr(path):
    """`getfattr -d PATH` as a dict of user.conat.* names to values."""
    out = run(f"getfattr -d '{path}'").stdout
    attrs = {}
    for line in out.splitlines():
        if "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            attrs[name] = value.strip('"')
    return attrs


def setfattr(path, name, value):
    run(f"setfattr -n user.conat.{name} -v '{value}' '{path}'")


def shows(path, value):
    try:
        return read(path) == value
    except FileNotFoundError:
        return value is None


def write_close(path, data):
    """open, write, close: returns the errno that close() reported, or 0."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.write(fd, data.encode())
    try:
        os.close(fd)
    except OSError as e:
        return e.errno
    return 0


@pytest.fixture
def pair(mount_factory):
    """Two mounts of one server and the store "p/s" in each."""
    a, b = mount_factory(), mount_factory()
    da, db = (os.path.join(m.path, "p", "s") for m in (a, b))
    os.makedirs(da)
    wait_until(lambda: os.path.isdir(db), what="the store to show on b")
    return da, db


# ---------------------------------------------------------- 1. ephemeral

@nats_only
def test_ephemeral_is_shared_and_lost_on_restart(nats, pair):
    da, db = pair
    a_root = os.path.dirname(os.path.dirname(da))
    kept = os.path.join(a_root, "p", "kept")
    os.mkdir(kept)
    setfattr(da, "ephemeral", 1)
    assert getfattr(da)["user.conat.ephemeral"] == "1"
    wait_until(lambda: getfattr(db)["user.conat.ephemeral"] == "1", what="ephemeral on b")
    assert getfattr(kept)["user.conat.ephemeral"] == "0"
    write(f"{da}/k", "gone soon")
    write(f"{kept}/k", "stays")
    b_kept = os.path.join(os.path.dirname(db), "kept")
    wait_until(lambda: shows(f"{db}/k", "gone soon") and shows(f"{b_kept}/k", "stays"),
               what="both values on b")

    nats.restart()
    wait_until(lambda: os.listdir(da) == [] and os.listdir(db) == [],
               timeout=30, what="the ephemeral store to lose its keys on both mounts")
    assert read(f"{kept}/k") == "stays" and read(f"{b_kept}/k") == "stays"
    assert getfattr(db)["user.conat.ephemeral"] == "1"
    assert getfattr(b_kept)["user.conat.keys"] == "1"


# -------------------------------------------------------------- 2. merges

@nats_only
def test_merges_keep_both_sides_offline_edits(nats, mount_factory):
    a, b = mount_factory(), mount_factory()
    la, lb, ja, jb = (os.path.join(m.path, "p", s) for s in ("lines", "json") for m in (a, b))
    os.makedirs(la)
    os.makedirs(ja)
    setfattr(la, "merge", "lines")
    setfattr(ja, "merge", "json")
    fails_with(f"setfattr -n user.conat.merge -v diff3 '{la}'", errno.EINVAL)
    wait_until(lambda: os.path.isdir(lb) and os.path.isdir(jb), what="the stores on b")
    # b learns the strategies at its next getxattr of the store
    assert getfattr(lb)["user.conat.merge"] == "lines"
    assert getfattr(jb)["user.conat.merge"] == "json"
    write(f"{la}/doc", "one\ntwo\nthree\nfour\n")
    write(f"{ja}/obj", json.dumps({"x": 1, "y": 1, "z": 1}))
    wait_until(lambda: shows(f"{lb}/doc", "one\ntwo\nthree\nfour\n")
               and os.path.exists(f"{jb}/obj"), what="the first values on b")

    nats.stop()
    write(f"{la}/doc", "ONE\ntwo\nthree\nfour\n")
    write(f"{lb}/doc", "one\ntwo\nthree\nFOUR\n")
    write(f"{ja}/obj", json.dumps({"x": 2, "y": 1, "z": 1}))
    write(f"{jb}/obj", json.dumps({"x": 1, "y": 1, "z": 1, "new": True}))
    nats.start()
    nats.wait_ready()

    merged = "ONE\ntwo\nthree\nFOUR\n"
    wait_until(lambda: shows(f"{la}/doc", merged) and shows(f"{lb}/doc", merged),
               timeout=30, what="both line edits on both mounts")
    both = {"x": 2, "y": 1, "z": 1, "new": True}
    wait_until(lambda: json.loads(read(f"{ja}/obj")) == both
               and json.loads(read(f"{jb}/obj")) == both,
               timeout=30, what="both JSON fields on both mounts")


# -------------------------------------------------------------- 3. limits

@pytest.fixture
def store(mount):
    path = os.path.join(mount.path, "p", "limited")
    os.makedirs(path)
    return path


def test_max_value_size_is_efbig_at_write(store):
    setfattr(store, "max_value_size", 10)
    assert getfattr(store)["user.conat.max_value_size"] == "10"
    write(f"{store}/k", "0123456789")
    fd = os.open(f"{store}/k", os.O_WRONLY)
    with pytest.raises(OSError) as e:
        os.write(fd, b"0123456789A")
    assert e.value.errno == errno.EFBIG
    os.close(fd)
    assert read(f"{store}/k") == "0123456789"
    fails_with(f"bash -c 'echo 0123456789A > \"{store}/k\"'", errno.EFBIG)
    setfattr(store, "max_value_size", 0)
    write(f"{store}/k", "0123456789A")
    assert read(f"{store}/k") == "0123456789A"


def test_max_keys_is_enospc_at_close(store):
    setfattr(store, "max_keys", 2)
    write(f"{store}/a", "1")
    write(f"{store}/b", "2")
    assert write_close(f"{store}/c", "3") == errno.ENOSPC
    assert sorted(os.listdir(store)) == ["a", "b"]
    assert not os.path.exists(f"{store}/c")
    assert write_close(f"{store}/a", "replaced") == 0  # not a new key
    assert read(f"{store}/a") == "replaced"
    assert getfattr(store)["user.conat.max_keys"] == "2"


def test_max_bytes_is_enospc_at_close(store):
    setfattr(store, "max_bytes", 1000)
    write(f"{store}/small", "x" * 100)
    assert write_close(f"{store}/small", "y" * 2000) == errno.ENOSPC
    assert read(f"{store}/small") == "x" * 100  # the refused value is not shown
    assert os.stat(f"{store}/small").st_size == 100
    assert write_close(f"{store}/big", "z" * 2000) == errno.ENOSPC
    assert not os.path.exists(f"{store}/big")
    fd = os.open(f"{store}/small", os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"w" * 3000)
    with pytest.raises(OSError) as e:
        os.fsync(fd)  # fsync reports it too
    assert e.value.errno == errno.ENOSPC
    os.close(fd)
    assert getfattr(store)["user.conat.max_bytes"] == "1000"


def test_max_age_removes_old_values(backend, store):
    write(f"{store}/old", "v")
    fails_with(f"setfattr -n user.conat.max_age -v soon '{store}'", errno.EINVAL)
    if backend.name == "nats":  # NATS needs at least 100 ms
        fails_with(f"setfattr -n user.conat.max_age -v 50 '{store}'", errno.EINVAL)
    setfattr(store, "max_age", 500)
    assert getfattr(store)["user.conat.max_age"] == "500"
    wait_until(lambda: getfattr(store)["user.conat.keys"] == "0", what="the value to age out")
    wait_until(lambda: not os.path.exists(f"{store}/old"), what="the file to go")
    assert os.listdir(store) == []


# ------------------------------------------------- 4. metadata and status

def test_getfattr_and_status_after_writes(backend, mount, store):
    setfattr(store, "merge", "json")
    setfattr(store, "max_keys", 10)
    write(f"{store}/a", "12345")
    write(f"{store}/b", "123")
    os.unlink(f"{store}/a")
    write(f"{store}/c", "1234567")
    run(f"sync '{store}/c'")
    expected = {
        "user.conat.name": "limited",
        "user.conat.ephemeral": "0",
        "user.conat.merge": "json",
        "user.conat.max_value_size": "0",
        "user.conat.max_age": "0",
        "user.conat.max_bytes": "0",
        "user.conat.max_keys": "10",
        "user.conat.keys": "2",
        "user.conat.bytes": "10",
    }
    wait_explained(lambda: getfattr(store) == expected, lambda: (getfattr(store), os.listdir(store)),
                   what=f"getfattr -d to show {expected}")
    attrs = getfattr(f"{store}/c")
    assert set(attrs) == {"user.conat.name", "user.conat.revision", "user.conat.time"}
    fails_with(f"setfattr -n user.conat.keys -v 3 '{store}'", errno.EOPNOTSUPP)

    def status():
        return json.loads(read(os.path.join(mount.path, ".conatfs", "status")))

    wait_until(lambda: status()["pending"] == 0, what="nothing pending")
    s = status()
    assert s["backend"] == backend.name
    assert s["connected"] is True
    assert s["connected_since"] > 0
    assert s["servers"] == (None if backend.name == "embedded" else backend.args[1])
    assert s["stores_open"] == 1
    assert [{k: v for k, v in st.items() if k != "loaded"} for st in s["stores"]] == [
        {"scope": "p", "store": "limited", "pending": 0}]
    assert s["stores"][0]["loaded"]["keys"] >= 0
    assert s["messages_dropped"] == 0
    assert s["last_error"] is None

    st = os.statvfs(store)
    assert st.f_files - st.f_ffree == 2  # the keys of the open stores
    assert st.f_blocks - st.f_bfree == 2  # one 4 KiB block per value
