"""Bad input (issue 8): concurrent writers on two NATS mounts, huge values,
10,000 open files, a directory of 100,000 keys, deleted keys still open, and
a randomized model test.

The model test runs random operations (create, write at offsets, append,
truncate, rename, unlink, mkdir, rmdir, setxattr) with random names (any
byte a file name may hold, up to 255 bytes) on one embedded mount, and
compares the tree with a Python model after each batch of 20; then in
batches on two NATS mounts in turn, each batch saved and shown by the other
mount (without editor names: those stay in one mount's memory).  CI runs a
fixed seed (2000 and 1000 operations); CONATFS_SEED=N picks another,
CONATFS_LONG=1 runs 20 times longer:

    CONATFS_SEED=7 CONATFS_LONG=1 meson test -C build e2e-badinput
"""
import errno
import fnmatch
import os
import random
import resource
import subprocess
import sys

import pytest

from conftest import Backend
from natsfixtures import saved
from util import conat_kv, read, run, wait_until, write


@pytest.fixture(params=["embedded"])
def backend(request, tmp_path):
    if request.param == "nats":
        return Backend("nats", ["--server", request.getfixturevalue("nats").url])
    data = tmp_path / "data"
    return Backend("embedded", ["--data", str(data)], data)


# ----------------------------------------------- 7. concurrent writers

WRITER = r"""
import os, random, sys
d, w, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(w)
for i in range(rounds):
    n = rng.choice([0, 1, 100, 5000, 200000])
    head = f"{w}:{i}:{n}:".encode()
    with open(f"{d}/k{rng.randrange(10)}", "wb") as f:
        f.write(head + bytes([(w * 31 + i) % 256]) * n)
"""


def whole(value):
    """Whether VALUE is one some writer wrote whole: "w:i:n:" and n bytes of its byte."""
    try:
        w, i, n, body = value.split(b":", 3)
        w, i, n = int(w), int(i), int(n)
    except ValueError:
        return False
    return body == bytes([(w * 31 + i) % 256]) * n


@pytest.mark.parametrize("backend", ["nats"], indirect=True)
def test_concurrent_writers_leave_whole_values(mount_factory, backend):
    a, b = mount_factory(), mount_factory()
    da, db = (os.path.join(m.path, "p", "hammer") for m in (a, b))
    os.makedirs(da)
    wait_until(lambda: os.path.isdir(db), what="the store on b")
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, (da, db)[w % 2], str(w), "40"],
                              stderr=subprocess.PIPE) for w in range(8)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    wait_until(lambda: saved(a) and saved(b), timeout=30, what="both mounts to save")

    def converged():
        va = {k: read(f"{da}/{k}", "rb") for k in sorted(os.listdir(da))}
        vb = {k: read(f"{db}/{k}", "rb") for k in sorted(os.listdir(db))}
        return va == vb and va
    values = wait_until(converged, timeout=30, what="the mounts to agree")
    assert sorted(values) == [f"k{i}" for i in range(10)]
    for k, v in values.items():
        assert whole(v), (k, v[:40], len(v))


# ------------------------------------------------ 8. sizes and deletes

def test_huge_value(mount_factory):
    m = mount_factory()
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    big = os.urandom(8 << 20)
    write(f"{d}/big", big, "wb")
    assert os.stat(f"{d}/big").st_size == len(big)
    assert read(f"{d}/big", "rb") == big
    with open(f"{d}/big", "r+b") as f:  # a write in the middle keeps the rest
        f.seek(5 << 20)
        f.write(b"middle")
    assert read(f"{d}/big", "rb") == big[:5 << 20] + b"middle" + big[(5 << 20) + 6:]
    m.unmount()
    m2 = mount_factory(mountpoint=m.path)
    assert read(f"{d}/big", "rb")[(5 << 20) - 2:(5 << 20) + 8] == big[(5 << 20) - 2:(5 << 20)] \
        + b"middle" + big[(5 << 20) + 6:(5 << 20) + 8]


OPEN_FILES = 10000


def test_ten_thousand_files_open_at_once(mount_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, OPEN_FILES + 200),
                                                max(hard, OPEN_FILES + 200)))
    try:
        m = mount_factory()
        d = os.path.join(m.path, "p", "many")
        os.makedirs(d)
        fds = []
        try:
            for i in range(OPEN_FILES):
                fds.append(os.open(f"{d}/f{i}", os.O_RDWR | os.O_CREAT))
            for i, fd in enumerate(fds):
                os.write(fd, f"value {i}".encode())
        finally:
            for fd in fds:
                os.close(fd)
        assert len(os.listdir(d)) == OPEN_FILES
        for i in range(0, OPEN_FILES, 997):
            assert read(f"{d}/f{i}") == f"value {i}"
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_directory_of_100000_keys(mount_factory, backend):
    conat_kv(backend.data, "fill", "p", "big", "100000")
    m = mount_factory()
    d = os.path.join(m.path, "p", "big")
    assert run(f"ls -f '{d}' | wc -l").stdout.strip() == str(100000 + 2)
    assert read(f"{d}/key-99999") == "v99999"
    os.unlink(f"{d}/key-0")
    write(f"{d}/new", "x")
    assert len(os.listdir(d)) == 100000


def test_deleted_key_still_open_reads_its_data(mount_factory):
    m = mount_factory()
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    write(f"{d}/k", "kept by the open file")
    with open(f"{d}/k", "rb") as f:
        os.unlink(f"{d}/k")
        assert not os.path.exists(f"{d}/k")
        assert f.read() == b"kept by the open file"  # POSIX: the open file keeps its data
        f.seek(5)
        assert f.read(2) == b"by"
    assert not os.path.exists(f"{d}/k")


@pytest.mark.parametrize("backend", ["nats"], indirect=True)
def test_key_deleted_on_another_mount_still_reads_where_open(mount_factory, backend):
    a, b = mount_factory(), mount_factory()
    da, db = (os.path.join(m.path, "p", "s") for m in (a, b))
    os.makedirs(da)
    write(f"{da}/k", "open on a")
    wait_until(lambda: os.path.exists(f"{db}/k"), what="the key on b")
    with open(f"{da}/k", "rb") as f:
        os.unlink(f"{db}/k")
        wait_until(lambda: not os.path.exists(f"{da}/k"), what="the delete on a")
        assert f.read() == b"open on a"
    assert os.listdir(da) == [] and os.listdir(db) == []


def test_truncate_of_a_closed_file(mount_factory):
    """Regression: truncate(2) without an open file kept garbage bytes."""
    m = mount_factory()
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    write(f"{d}/k", "abcdef")
    os.truncate(f"{d}/k", 3)
    assert read(f"{d}/k", "rb") == b"abc"
    os.truncate(f"{d}/k", 50)
    os.truncate(f"{d}/k", 5)
    assert read(f"{d}/k", "rb") == b"abc\0\0"


def test_write_to_a_key_deleted_meanwhile(mount_factory):
    """Documented behaviour: a file open for writing whose key is deleted
    meanwhile (by rm here or on another mount) writes nothing at close, as
    on POSIX an unlinked file's data goes with its last descriptor; the key
    stays deleted."""
    m = mount_factory()
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    write(f"{d}/k", "old")
    fd = os.open(f"{d}/k", os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, b"new value")
        os.unlink(f"{d}/k")
        os.write(fd, b" more")
    finally:
        os.close(fd)
    assert not os.path.exists(f"{d}/k")
    assert os.listdir(d) == []


# ------------------------------------------------- 6. a randomized model

SEED = int(os.environ.get("CONATFS_SEED", "20261126"))
OPS = 2000 * (20 if os.environ.get("CONATFS_LONG") == "1" else 1)
NATS_OPS = OPS // 2
CHECK_EVERY = 20
NAME_BYTES = bytes(b for b in range(1, 256) if b not in b"/%")


LOCAL_PATTERNS = [b".*.sw?", b"*~", b".#*", b"#*#", b"4913", b".*.tmp"]  # local_patterns


def random_name(rng, local_ok=True):
    """Any bytes a file name may hold ("%" only as "%25", its canonical
    escape), from 1 to 255 bytes, now and then the longest."""
    n = 255 if rng.random() < 0.1 else rng.randint(1, 24)
    parts, size = [], 0
    while size < n:
        part = b"%25" if rng.random() < 0.03 and size + 3 <= n else bytes([rng.choice(NAME_BYTES)])
        parts.append(part)
        size += len(part)
    name = b"".join(parts)
    if name in (b".", b".."):
        name = b"n" + name[1:]
    if not local_ok and any(fnmatch.fnmatchcase(name, p) for p in LOCAL_PATTERNS):
        name = b"n" + name[1:-1] + b"n"  # an editor's file: kept by one mount only
    return name


class Model:
    """The expected tree of one scope: store -> {file name: bytes}."""

    def __init__(self, root, rng, local_ok=True):
        self.root, self.rng, self.local_ok = root, rng, local_ok
        self.stores = {}
        self.log = []  # what each step did, for the message of a failure

    def path(self, store, name=None):
        p = os.path.join(self.root, store)
        return p if name is None else os.path.join(p, name)

    def pick_store(self):
        return self.rng.choice(sorted(self.stores)) if self.stores else None

    def pick_file(self, store, fresh=0.3):
        files = sorted(self.stores[store])
        if not files or self.rng.random() < fresh:
            return random_name(self.rng, self.local_ok)
        return self.rng.choice(files)

    def expect(self, want, fn):
        """Runs FN; it must fail with WANT (an errno) or succeed (None)."""
        try:
            fn()
        except OSError as e:
            assert e.errno == want, f"{self.log[-1]}: {e} (expected {want})"
            return
        assert want is None, f"{self.log[-1]}: succeeded, expected errno {want}"

    def step(self):
        rng = self.rng
        op = rng.choice(["create", "write", "write", "append", "truncate", "rename",
                         "unlink", "mkdir", "rmdir", "setxattr"])
        if op == "mkdir" or not self.stores:
            name = os.fsencode(f"s{rng.randrange(4)}")
            want = errno.EEXIST if name in self.stores else None
            self.log.append(("mkdir", name))
            self.expect(want, lambda: os.mkdir(self.path(name)))
            self.stores.setdefault(name, {})
            return
        store = self.pick_store()
        files = self.stores[store]
        if op == "rmdir":
            want = errno.ENOTEMPTY if files else None
            self.log.append(("rmdir", store))
            self.expect(want, lambda: os.rmdir(self.path(store)))
            if want is None:
                del self.stores[store]
        elif op == "setxattr":
            if rng.random() < 0.5:  # a change of kind only while empty
                value = rng.choice([b"0", b"1"])
                same = os.getxattr(self.path(store), "user.conat.ephemeral") == value
                want = None if same or not files else errno.EBUSY
                self.log.append(("ephemeral", store, value))
                self.expect(want, lambda: os.setxattr(self.path(store), "user.conat.ephemeral",
                                                      value))
            else:
                value = str(rng.randint(100000, 1000000)).encode()
                os.setxattr(self.path(store), "user.conat.max_value_size", value)
                assert os.getxattr(self.path(store), "user.conat.max_value_size") == value
        elif op == "create":
            name = self.pick_file(store, fresh=0.8)
            want = errno.EEXIST if name in files else None
            self.log.append(("create", store, name))
            self.expect(want, lambda: os.close(os.open(self.path(store, name),
                                                       os.O_WRONLY | os.O_CREAT | os.O_EXCL)))
            files.setdefault(name, b"")
        elif op in ("write", "append"):
            name = self.pick_file(store)
            old = files.get(name, b"")
            data = os.urandom(rng.choice([0, 1, 7, 100, 4096, 70000]))
            if op == "append":
                flags, off, new = os.O_WRONLY | os.O_CREAT | os.O_APPEND, None, old + data
            else:
                off = rng.randint(0, len(old) + 10)
                flags = os.O_WRONLY | os.O_CREAT
                padded = old + b"\0" * max(0, off - len(old))
                new = padded[:off] + data + padded[off + len(data):] if data else old
            self.log.append((op, store, name, off, len(data)))
            fd = os.open(self.path(store, name), flags)
            try:
                if off is None:
                    os.write(fd, data)
                else:
                    os.pwrite(fd, data, off)
            finally:
                os.close(fd)
            files[name] = new
        elif op == "truncate":
            name = self.pick_file(store, fresh=0.1)
            size = rng.choice([0, 1, 50, 5000])
            want = None if name in files else errno.ENOENT
            self.log.append(("truncate", store, name, size))
            self.expect(want, lambda: os.truncate(self.path(store, name), size))
            if want is None:
                files[name] = files[name][:size] + b"\0" * max(0, size - len(files[name]))
        elif op == "unlink":
            name = self.pick_file(store, fresh=0.1)
            want = None if name in files else errno.ENOENT
            self.log.append(("unlink", store, name))
            self.expect(want, lambda: os.unlink(self.path(store, name)))
            files.pop(name, None)
        elif op == "rename":
            name = self.pick_file(store, fresh=0.1)
            to_store = self.pick_store()
            to = self.pick_file(to_store, fresh=0.7)
            want = None if name in files else errno.ENOENT
            self.log.append(("rename", store, name, to_store, to))
            self.expect(want, lambda: os.rename(self.path(store, name),
                                                self.path(to_store, to)))
            if want is None and (store, name) != (to_store, to):
                self.stores[to_store][to] = files.pop(name)

    def difference(self, root):
        """None if the tree under ROOT (another mount's) is the model's, else
        the first difference."""
        try:
            if sorted(os.listdir(root)) != sorted(self.stores):
                return f"stores {sorted(os.listdir(root))} != {sorted(self.stores)}"
            for store, files in self.stores.items():
                d = os.path.join(root, store)
                names = set(os.listdir(d))
                if names != set(files):
                    return f"{store!r}: extra {names - set(files)}, missing {set(files) - names}"
                for n, v in files.items():
                    got = read(os.path.join(d, n), "rb")
                    if got != v:
                        return f"{store!r}/{n!r}: {len(got)} bytes {got[:16]!r}, expected " \
                               f"{len(v)} {v[:16]!r}"
            return None
        except FileNotFoundError as e:
            return str(e)

    def check(self):
        assert sorted(os.listdir(self.root)) == sorted(self.stores)
        for store, files in self.stores.items():
            assert sorted(os.listdir(self.path(store))) == sorted(files), store
            for name, value in files.items():
                got = read(self.path(store, name), "rb")
                assert got == value, \
                    f"{store!r}/{name!r}: {got[:20]!r} ({len(got)} bytes), expected " \
                    f"{value[:20]!r} ({len(value)}); {[e for e in self.log if name in e]}"


def test_random_operations_match_the_model(mount_factory):
    m = mount_factory()
    root = os.fsencode(os.path.join(m.path, "model"))
    os.mkdir(root)
    model = Model(root, random.Random(SEED))
    for i in range(OPS):
        try:
            model.step()
            if i % CHECK_EVERY == CHECK_EVERY - 1:
                model.check()
        except AssertionError as e:
            last = "\n".join(map(repr, model.log[-12:]))
            raise AssertionError(f"seed {SEED}, operation {i}: {e}\nlast steps:\n{last}") \
                from None
    model.check()


@pytest.mark.parametrize("backend", ["nats"], indirect=True)
def test_random_operations_on_two_nats_mounts(mount_factory, backend):
    """Batches of operations on one mount, then the other: at each
    quiescent point both mounts are saved and show the model's tree."""
    mounts = [mount_factory(), mount_factory()]
    roots = [os.fsencode(os.path.join(m.path, "model")) for m in mounts]
    os.mkdir(roots[0])
    model = Model(roots[0], random.Random(SEED), local_ok=False)
    for batch in range(NATS_OPS // CHECK_EVERY):
        model.root = roots[batch % 2]
        try:
            for _ in range(CHECK_EVERY):
                model.step()
            model.check()
            wait_until(lambda: all(saved(m) for m in mounts), what="both mounts to save")
            other = roots[(batch + 1) % 2]
            try:
                wait_until(lambda: model.difference(other) is None, what="the other mount")
            except AssertionError:
                raise AssertionError(f"the other mount differs: {model.difference(other)}")
        except AssertionError as e:
            last = "\n".join(map(repr, model.log[-12:]))
            raise AssertionError(f"seed {SEED}, batch {batch}: {e}\nlast steps:\n{last}") \
                from None
