"""The NATS backend (DESIGN §6, issue 4) against a real nats-server -js:
two mounts on one server, an independent Node.js client using the bucket,
key and subject names of docs/nats-mapping.md, offline writes, conflicts,
ephemeral stores across a server restart, and the server's limits.  The
three-node cluster is in test_cluster.py.

Each test gets its own server (the `nats` fixture); a test that needs other
server options parametrizes `nats_options`.
"""
import errno
import os
import threading

import pytest

from conftest import Backend
from natsfixtures import settle_echoes  # noqa: F401 (fixture)
from natsfixtures import (bucket, fsync_errno, kvjs, kvjs_dump, kvjs_get, nats_key, saved,
                          shows, status)
from util import fails_with, read, run, wait_until, write

pytestmark = pytest.mark.usefixtures("settle_echoes")


@pytest.fixture
def backend(nats):
    return Backend("nats", ["--server", nats.url])


@pytest.fixture
def pair(mount_factory):
    """Two mounts of one server, and the same store dir in each."""
    a, b = mount_factory(), mount_factory()
    da, db = (os.path.join(m.path, "project-1", "my store") for m in (a, b))
    os.makedirs(da)
    wait_until(lambda: os.path.isdir(db), what="the store to show in the other mount")
    return a, b, da, db


# ------------------------------------------------- 1. two mounts, one server

# file name in the mount -> the key it is (DESIGN §1)
ODD = {
    b"plain": b"plain",
    b"a b": b"a b",
    "déjà ☃".encode(): "déjà ☃".encode(),
    b"x=y": b"x=y",
    b"=41": b"=41",          # not "A": only the canonical form decodes
    b"a..b": b"a..b",
    b"trail.": b"trail.",
    b"a.b.c": b"a.b.c",
    b".hidden": b".hidden",
    b"star*>": b"star*>",
    b"tab\tnew\nline": b"tab\tnew\nline",
    b"back\\slash": b"back\\slash",
    b"\xff\xfe not utf-8": b"\xff\xfe not utf-8",
    b"$KV.x": b"$KV.x",
    b"@at": b"@at",
    b"a%2Fb": b"a/b",
    b"100%25": b"100%",
    b"%2E": b".",
    b"%2E%2E": b"..",
    b"%00": b"",
    "é".encode() * 127 + b"x": "é".encode() * 127 + b"x",  # 255 bytes: NAME_MAX
}
ALL_BYTES = bytes(range(256)) * 5


def test_key_written_on_a_is_read_on_b(pair):
    a, b, da, db = pair
    write(f"{da}/theme", "dark")
    wait_until(lambda: shows(f"{db}/theme", b"dark"), what="the value on b")
    write(f"{db}/theme", "light")
    wait_until(lambda: shows(f"{da}/theme", b"light"), what="b's value on a")
    write(f"{da}/empty", "")
    wait_until(lambda: shows(f"{db}/empty", b""), what="the empty value on b")
    assert sorted(os.listdir(db)) == ["empty", "theme"]


def test_store_removed_on_b_and_made_again_on_a(pair):
    """A keeps the store open while B removes it; A makes it again and
    writes at once, often before its open handle has caught up with the new
    bucket; B writes too.  Both mounts show both keys: a handle must not
    skip the new bucket's first revisions because the old bucket had gone
    further (unit test /nats/bucket-made-again-elsewhere reaches that case
    reliably)."""
    a, b, da, db = pair
    for i in range(30):  # the old bucket goes on to revision 60
        write(f"{da}/k{i}", "v")
        os.unlink(f"{da}/k{i}")
    wait_until(lambda: saved(a) and os.listdir(db) == [], what="the old bucket to settle")
    os.rmdir(db)

    def made_on_a():
        try:
            os.mkdir(da)
            return True
        except FileExistsError:  # a still shows the old one
            return False

    wait_until(made_on_a, what="mkdir on a")
    write(f"{da}/from-a", "a")
    wait_until(lambda: os.path.isdir(db), what="the new store on b")
    write(f"{db}/from-b", "b")
    for d in (da, db):
        wait_until(lambda: sorted(os.listdir(d)) == ["from-a", "from-b"],
                   what=f"both keys in {d}")
    assert read(f"{da}/from-b") == "b" and read(f"{db}/from-a") == "a"


def test_store_made_on_a_is_listed_on_b(pair):
    a, b, da, db = pair
    os.makedirs(os.path.join(a.path, "scope 2", "odd @store%25"))
    os.mkdir(os.path.join(a.path, "empty-scope"))
    wait_until(lambda: "odd @store%25" in os.listdir(os.path.join(b.path, "scope 2")),
               what="the store on b")
    wait_until(lambda: {"project-1", "scope 2", "empty-scope"} <= set(os.listdir(b.path)),
               what="the scopes on b")
    write(os.path.join(b.path, "scope 2", "odd @store%25", "k"), "v")
    wait_until(lambda: shows(os.path.join(a.path, "scope 2", "odd @store%25", "k"), b"v"),
               what="b's key in a's store")


def test_rm_on_a_removes_on_b(pair):
    a, b, da, db = pair
    write(f"{da}/k", "v")
    write(f"{da}/other", "w")
    wait_until(lambda: shows(f"{db}/k", b"v"), what="the key on b")
    run(f"rm '{da}/k'")
    wait_until(lambda: not os.path.exists(f"{db}/k"), what="the key to go on b")
    assert os.listdir(db) == ["other"]
    run(f"rm -r '{da}'")
    scope_b = os.path.dirname(db)
    wait_until(lambda: "my store" not in os.listdir(scope_b), what="the store to go on b")


def test_all_byte_values_and_odd_names_round_trip(pair, nats):
    a, b, da, db = pair
    da_b, db_b = os.fsencode(da), os.fsencode(db)
    for i, name in enumerate(ODD):
        write(da_b + b"/" + name, ALL_BYTES + bytes([i]), "wb")
    for i, name in enumerate(ODD):
        wait_until(lambda: shows(db_b + b"/" + name, ALL_BYTES + bytes([i])),
                   what=f"{name!r} on b")
    assert sorted(os.listdir(db_b)) == sorted(ODD)
    wait_until(lambda: saved(a), what="a to save")
    # The bucket holds them under the documented names.
    assert kvjs_dump(nats.url, bucket("project-1", "my store")) \
        == {nats_key(key): ALL_BYTES + bytes([i]) for i, key in enumerate(ODD.values())}
    for name in ODD:
        os.unlink(db_b + b"/" + name)
    wait_until(lambda: os.listdir(da_b) == [], what="the deletes on a")


# ------------------------------------------------ 2. an independent client

def test_node_client_and_mount_share_keys(pair, nats):
    a, b, da, db = pair
    bkt = bucket("project-1", "my store")
    kvjs(nats.url, "put", bkt, "theme", input=b"dark")
    wait_until(lambda: shows(f"{da}/theme", b"dark"), what="node's key in the mount")
    kvjs(nats.url, "put", bkt, "d=C3=A9j=C3=A0.x=3Dy", input=b"\x00\xffbin")
    wait_until(lambda: shows(f"{db}/déjà.x=y", b"\x00\xffbin"), what="node's odd key")
    kvjs(nats.url, "put", bkt, "=00", input=b"empty key")
    wait_until(lambda: shows(f"{da}/%00", b"empty key"), what="node's empty key")
    # A key not in conat's canonical form is not shown.
    kvjs(nats.url, "put", bkt, "=41", input=b"not canonical")
    write(f"{da}/from-mount", "mounted")
    wait_until(lambda: kvjs_get(nats.url, bkt, "from-mount") == b"mounted",
               what="the mount's key in node")
    assert "A" not in os.listdir(da) and "=41" not in os.listdir(da)
    # Changes and deletes both ways.
    kvjs(nats.url, "put", bkt, "theme", input=b"light")
    wait_until(lambda: shows(f"{db}/theme", b"light"), what="node's change")
    kvjs(nats.url, "del", bkt, "theme")
    wait_until(lambda: not os.path.exists(f"{db}/theme"), what="node's delete")
    os.unlink(f"{db}/from-mount")
    wait_until(lambda: kvjs_get(nats.url, bkt, "from-mount") is None, what="the delete in node")
    buckets = kvjs(nats.url, "buckets").stdout.decode().split()
    assert bkt in buckets and "conat_scopes" in buckets


# ----------------------------------------------------------------- 3. offline

def test_offline_writes_are_queued_and_saved(pair, nats):
    a, b, da, db = pair
    write(f"{da}/old", "before")
    wait_until(lambda: shows(f"{db}/old", b"before"), what="the first value on b")
    nats.stop()
    wait_until(lambda: not status(a)["connected"], what="a to notice")
    values = {f"k{i}": f"offline {i}".encode() for i in range(20)}
    values["old"] = b"changed offline"
    for k, v in values.items():
        write(f"{da}/{k}", v, "wb")  # close succeeds: the value is queued
    assert read(f"{da}/k7") == "offline 7"  # and reads from the replica
    assert read(f"{db}/old") == "before"
    with open("/proc/sys/vm/drop_caches", "w") as f:  # lookups go to the daemons again
        f.write("2\n")
    assert read(f"{da}/k7") == "offline 7" and read(f"{db}/old") == "before"
    assert sorted(os.listdir(da)) == sorted(values)
    write(f"{da}/k0", "offline 0")  # the same value again, after the lookups
    assert status(a)["pending"] == len(values)
    assert fsync_errno(f"{da}/k0") in (errno.EIO, errno.ETIMEDOUT)
    assert status(a)["pending"] == len(values)  # still queued
    nats.start()
    nats.wait_ready()
    wait_until(lambda: saved(a), timeout=30, what="a to save its queue")
    for k, v in values.items():
        wait_until(lambda: shows(f"{db}/{k}", v), what=f"{k} on b")
    assert sorted(os.listdir(db)) == sorted(values)
    assert fsync_errno(f"{da}/k0") == 0


# --------------------------------------------------------------- 4. conflicts

def test_conflicting_offline_writes_converge(pair, nats):
    """Both mounts change one key while the server is down; after it is
    back, the last write the server orders wins on both."""
    a, b, da, db = pair
    bkt = bucket("project-1", "my store")
    write(f"{da}/k", "initial")
    wait_until(lambda: shows(f"{db}/k", b"initial"), what="the first value on b")
    nats.stop()
    wait_until(lambda: not status(a)["connected"] and not status(b)["connected"],
               what="both to notice")
    write(f"{da}/k", "from a")
    write(f"{db}/k", "from b")
    write(f"{da}/only-a", "a")
    assert read(f"{da}/k") == "from a" and read(f"{db}/k") == "from b"
    nats.start()
    nats.wait_ready()
    wait_until(lambda: saved(a) and saved(b), timeout=30, what="both to save")

    def converged():
        va, vb = read(f"{da}/k", "rb"), read(f"{db}/k", "rb")
        return va == vb and va in (b"from a", b"from b") and va
    winner = wait_until(converged, what="the mounts to agree")
    assert kvjs_get(nats.url, bkt, "k") == winner  # the server's last write
    assert saved(a) and saved(b) and converged() == winner
    wait_until(lambda: shows(f"{db}/only-a", b"a"), what="the other key on b")


# --------------------------------------------------------------- 6. ephemeral

def test_ephemeral_store_is_emptied_by_a_server_restart(pair, nats):
    a, b, da, db = pair
    os.setxattr(da, "user.conat.ephemeral", b"1")
    assert os.getxattr(db, "user.conat.ephemeral") == b"1"
    for i in range(5):
        write(f"{da}/k{i}", f"v{i}")
    write(f"{db}/from-b", "b")
    wait_until(lambda: len(os.listdir(db)) == 6 and len(os.listdir(da)) == 6,
               what="the keys on both")
    wait_until(lambda: saved(a) and saved(b), what="both to save")
    nats.restart()
    wait_until(lambda: os.listdir(da) == [] and os.listdir(db) == [], timeout=30,
               what="the keys to disappear from both mounts")
    assert not os.path.exists(f"{db}/k0") and not os.path.exists(f"{da}/from-b")
    # The store works again, and is still ephemeral.
    write(f"{da}/again", "after restart")
    wait_until(lambda: shows(f"{db}/again", b"after restart"), what="a's new key on b")
    write(f"{db}/again-b", "from b")
    wait_until(lambda: shows(f"{da}/again-b", b"from b"), what="b's new key on a")
    assert fsync_errno(f"{da}/again") == 0
    assert os.getxattr(da, "user.conat.ephemeral") == b"1"
    assert sorted(os.listdir(da)) == sorted(os.listdir(db)) == ["again", "again-b"]


# ------------------------------------------------------------------ 7. limits

SMALL_PAYLOAD = 64 * 1024
HEADER_RESERVE = 512  # docs/nats-mapping.md: max_payload minus 512 bytes


@pytest.mark.parametrize("nats_options", [{"max_payload": SMALL_PAYLOAD}])
def test_values_over_max_payload_are_efbig(pair, nats):
    a, b, da, db = pair
    limit = SMALL_PAYLOAD - HEADER_RESERVE
    write(f"{da}/k", "small")
    fd = os.open(f"{da}/k", os.O_WRONLY | os.O_TRUNC)
    try:
        with pytest.raises(OSError) as e:
            os.write(fd, b"x" * (limit + 1))
        assert e.value.errno == errno.EFBIG
    finally:
        os.close(fd)
    fails_with(f"head -c {SMALL_PAYLOAD + 1} /dev/zero > '{da}/big'", errno.EFBIG)
    fails_with(f"truncate -s {limit + 1} '{da}/k'", errno.EFBIG)
    # The largest value works, and the mount (and its connection) keep working.
    write(f"{da}/max", b"m" * limit, "wb")
    assert fsync_errno(f"{da}/max") == 0
    wait_until(lambda: shows(f"{db}/max", b"m" * limit), what="the largest value on b")
    write(f"{da}/after", "normal")
    wait_until(lambda: shows(f"{db}/after", b"normal"), what="a normal write afterwards")
    assert status(a)["connected"] and status(b)["connected"]
    assert kvjs_get(nats.url, bucket("project-1", "my store"), "after") == b"normal"


def test_names_too_long_for_the_server(pair, nats):
    """A file name is at most 255 bytes, whose key encodes to at most 765,
    far below the backend's 3000-byte subject cap; so a key too long for the
    server comes from another client: the mount shows it, and a write to it
    is refused (ENAMETOOLONG from fsync) without sending it."""
    a, b, da, db = pair
    bkt = bucket("project-1", "my store")
    # Store names: a bucket name is at most 252 characters, and "_HH" per byte.
    fails_with(f"mkdir '{a.path}/project-1/{'~' * 90}'", errno.ENAMETOOLONG)
    fails_with(f"touch '{da}/{'k' * 256}'", errno.ENAMETOOLONG)
    # A 3100-byte key (3100 + len("$KV.<bucket>.") > 3000) from Node.js.
    long_key = "k" * 3100
    kvjs(nats.url, "put", bkt, long_key, input=b"from node")
    shown = wait_until(lambda: [n for n in os.listdir(da) if "%~" in n], what="the long key")
    assert len(shown) == 1 and len(shown[0]) <= 255
    path = f"{da}/{shown[0]}"
    assert os.getxattr(path, "user.conat.name") == long_key.encode()
    assert read(path) == "from node"
    write(path, "from the mount")  # write-behind: close succeeds
    assert fsync_errno(path) == errno.ENAMETOOLONG
    wait_until(lambda: shows(path, b"from node"), what="the refused value to be dropped")
    assert kvjs_get(nats.url, bkt, long_key) == b"from node"  # nothing was sent
    # The mount and its connection keep working.
    write(f"{da}/after", "normal")
    assert fsync_errno(f"{da}/after") == 0
    wait_until(lambda: shows(f"{db}/after", b"normal"), what="a normal write afterwards")
    assert status(a)["connected"]


# ------------------------------- stores made, moved and removed under load

def test_store_churn_while_another_mount_reads(mount_factory):
    """mkdir, 20 writes, mv and rm -r of a store, again and again, while a
    second mount lists and reads the scope: every command succeeds, both
    daemons stay up and unmount cleanly.  (Before the watches stopped using
    libnats' ordered consumers, a few hundred rounds hung or crashed the
    remover's NATS reader thread.)"""
    a, b = mount_factory(), mount_factory()
    scope, other = (os.path.join(m.path, "p") for m in (a, b))
    os.makedirs(scope)
    stop = threading.Event()
    errors = []

    def look():
        while not stop.is_set():
            try:
                for s in os.listdir(other):
                    for k in os.listdir(f"{other}/{s}")[:3]:
                        read(f"{other}/{s}/{k}")
            except FileNotFoundError:
                pass  # removed meanwhile
            except OSError as e:
                errors.append(e)

    reader = threading.Thread(target=look, daemon=True)
    reader.start()
    try:
        for i in range(ROUNDS):
            os.makedirs(f"{scope}/a")
            for k in range(20):
                write(f"{scope}/a/k{k}", f"round {i} value {k}")
            run(f"mv {scope}/a {scope}/b")
            assert read(f"{scope}/b/k7") == f"round {i} value 7"
            run(f"rm -r {scope}/b")
            assert os.listdir(scope) == []
            assert a.proc.poll() is None and b.proc.poll() is None
    finally:
        stop.set()
        reader.join(10)
    assert not reader.is_alive() and errors == []
    a.unmount()
    b.unmount()


ROUNDS = 150


# ------------------------------------- the generic file tests, on NATS too

# The backend-neutral tests of test_files.py and test_errors.py run here once
# more: collected in this module, their `mount` comes from its `backend`.
from test_files import (  # noqa: E402,F401
    test_append, test_chmod_chown_utime_succeed, test_cp_512k_and_cmp,
    test_echo_cat_round_trip, test_fsync, test_getfattr, test_kernel_forgets_and_asks_again,
    test_many_writes_are_one_set_on_close, test_mkdir_rmdir, test_mv_across_stores,
    test_mv_in_one_store, test_open_file_keeps_reading_a_deleted_key,
    test_parallel_writers_and_readers, test_python_os_calls, test_rm,
    test_rm_r_and_mv_of_a_store, test_second_mount_process_sees_values, test_stat,
    test_touch_makes_an_empty_key, test_truncate, test_write_at_offset_fills_holes)
from test_errors import (  # noqa: E402,F401
    test_eacces_status_is_read_only, test_eexist, test_einval, test_eisdir, test_enametoolong,
    test_enoent, test_enotdir, test_enotempty, test_eperm, test_erofs, test_rename_flags, tree)
