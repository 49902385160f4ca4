"""Name encoding through the mount (DESIGN §1): odd names round-trip through
ls, cat and rm; names that do not decode are refused with EINVAL."""
import errno
import os
import shlex

import pytest

from util import conat_kv, fails_with, read, run, write

LONG = "long-" + "x" * 290 + "-end"  # 300 bytes: over NAME_MAX once a file name

# key name -> the file name it has in the mount
ODD = {
    "with space": "with space",
    "café ☃": "café ☃",
    "a/b": "a%2Fb",
    "100%": "100%25",
    ".": "%2E",
    "..": "%2E%2E",
    "@at": "@at",
    "": "%00",
}


def test_odd_names_set_elsewhere(mount_factory, backend):
    for i, key in enumerate(list(ODD) + [LONG]):
        conat_kv(backend.data, "set", "s", "odd", key, input=f"value {i}".encode())
    m = mount_factory()
    d = os.path.join(m.path, "s", "odd")
    listed = run(f"ls {d}").stdout.splitlines()
    shortened = [n for n in listed if "%~" in n]
    assert sorted(set(listed) - set(shortened)) == sorted(ODD.values())
    assert len(shortened) == 1 and len(shortened[0].encode()) <= 255
    assert shortened[0].startswith("long-xxx")

    for i, key in enumerate(ODD):
        path = shlex.quote(os.path.join(d, ODD[key]))
        assert run(f"cat {path}").stdout == f"value {i}"
        assert os.getxattr(os.path.join(d, ODD[key]), "user.conat.name") == key.encode()
    long_path = os.path.join(d, shortened[0])
    assert run(f"cat {long_path}").stdout == f"value {len(ODD)}"
    assert os.getxattr(long_path, "user.conat.name") == LONG.encode()
    run(f"getfattr -n user.conat.name {long_path}")

    for name in listed:
        run(f"rm {shlex.quote(os.path.join(d, name))}")
    assert os.listdir(d) == []
    m.unmount()
    assert conat_kv(backend.data, "keys", "s", "odd") == b""


def test_odd_names_made_in_the_mount(mount_factory, backend):
    m = mount_factory()
    d = os.path.join(m.path, "s", "odd")
    os.makedirs(d)
    for key, file_name in ODD.items():
        run(f"echo {shlex.quote(key)} > {shlex.quote(os.path.join(d, file_name))}")
    assert sorted(os.listdir(d)) == sorted(ODD.values())
    run(f"mv {shlex.quote(d + '/a%2Fb')} {shlex.quote(d + '/c%2Fd')}")
    m.unmount()
    keys = conat_kv(backend.data, "keys", "s", "odd").decode().splitlines()
    # "" sorts first and prints as an empty line
    assert sorted(keys) == sorted(k for k in list(ODD) + ["c/d"] if k != "a/b")
    assert conat_kv(backend.data, "get", "s", "odd", "100%") == b"100%\n"
    assert conat_kv(backend.data, "get", "s", "odd", "") == b"\n"


def test_store_and_scope_names(mount_factory, backend):
    conat_kv(backend.data, "set", ".hidden", "@store", "k", input=b"v")
    conat_kv(backend.data, "set", "a/b", "c%d", "k", input=b"w")
    m = mount_factory()
    assert sorted(os.listdir(m.path)) == sorted([".conatfs", "%2Ehidden", "a%2Fb"])
    assert os.listdir(f"{m.path}/%2Ehidden") == ["%40store"]
    assert read(f"{m.path}/%2Ehidden/%40store/k") == "v"
    assert read(f"{m.path}/a%2Fb/c%25d/k") == "w"
    run(f"mkdir '{m.path}/%2Ehidden/%40new'")
    assert sorted(os.listdir(f"{m.path}/%2Ehidden")) == ["%40new", "%40store"]


@pytest.mark.parametrize("name", ["a%zz", "50%", "%", "a%2", "%41", "a%2fb", "x%00y"])
def test_names_that_do_not_decode(store, name):
    path = shlex.quote(os.path.join(store, name))
    fails_with(f"touch {path}", errno.EINVAL)
    fails_with(f"cat {path}", errno.EINVAL)
    fails_with(f"mkdir {shlex.quote(os.path.dirname(store) + '/' + name)}", errno.EINVAL)
    assert os.listdir(store) == []


def test_shortened_name_that_matches_nothing(store):
    path = os.path.join(store, "x%~0123456789abcdef")
    fails_with(f"touch {path}", errno.EINVAL)
    fails_with(f"cat {path}", errno.ENOENT)


def test_long_name_refused_by_the_kernel(store):
    fails_with(f"touch {store}/{'n' * 256}", errno.ENAMETOOLONG)
    write(f"{store}/{'n' * 255}", "fits")
    assert os.listdir(store) == ["n" * 255]
