"""Each errno of the DESIGN §2 table that the embedded backend can give,
triggered by a real command, with the message a shell user sees."""
import ctypes
import errno
import os

import pytest

from util import fails_with, read, run, write


@pytest.fixture
def tree(mount, store):
    """MOUNT/project-x/settings/theme, and the store dir."""
    write(f"{store}/theme", "dark")
    return store


def test_enoent(tree):
    fails_with(f"cat {tree}/missing", errno.ENOENT)
    fails_with(f"rm {tree}/missing", errno.ENOENT)
    fails_with(f"mv {tree}/missing {tree}/x", errno.ENOENT)
    fails_with(f"ls {tree}/../../no-scope", errno.ENOENT)
    fails_with(f"ls {tree}/../no-store", errno.ENOENT)


def test_eexist(tree):
    fails_with(f"mkdir {tree}", errno.EEXIST)
    fails_with(f"mkdir {tree}/..", errno.EEXIST)
    with pytest.raises(FileExistsError):
        os.open(f"{tree}/theme", os.O_WRONLY | os.O_CREAT | os.O_EXCL)


def renameat2(old, new, flags):
    """rename(2) with flags (Python's os.rename has none); 0 or the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    res = libc.renameat2(at_fdcwd, old.encode(), at_fdcwd, new.encode(), flags)
    return 0 if res == 0 else ctypes.get_errno()


def test_rename_flags(tree):
    rename_noreplace, rename_exchange = 1, 2
    write(f"{tree}/other", "o")
    assert renameat2(f"{tree}/theme", f"{tree}/other", rename_noreplace) == errno.EEXIST
    assert renameat2(f"{tree}/theme", f"{tree}/other", rename_exchange) == errno.EINVAL
    assert renameat2(f"{tree}/theme", f"{tree}/new", rename_noreplace) == 0
    assert read(f"{tree}/new") == "dark" and read(f"{tree}/other") == "o"


def test_eisdir(tree):
    fails_with(f"echo x > {tree}", errno.EISDIR)
    fails_with(f"cat {tree}", errno.EISDIR)
    fails_with(f"rm {tree}", errno.EISDIR)


def test_enotdir(tree):
    fails_with(f"ls {tree}/theme/", errno.ENOTDIR)
    fails_with(f"cat {tree}/theme/x", errno.ENOTDIR)
    fails_with(f"rmdir {tree}/theme", errno.ENOTDIR)


def test_enotempty(tree):
    fails_with(f"rmdir {tree}", errno.ENOTEMPTY)
    fails_with(f"rmdir {os.path.dirname(tree)}", errno.ENOTEMPTY)
    run(f"rm {tree}/theme")
    run(f"rmdir {tree}")
    run(f"rmdir {os.path.dirname(tree)}")


def test_einval(tree):
    fails_with(f"touch {tree}/50%", errno.EINVAL)
    fails_with(f"cat {tree}/a%zz", errno.EINVAL)
    fails_with(f"mkdir {tree}/../%4", errno.EINVAL)


def test_enametoolong(tree):
    fails_with(f"touch {tree}/{'k' * 256}", errno.ENAMETOOLONG)
    fails_with(f"mkdir {tree}/../{'s' * 256}", errno.ENAMETOOLONG)


def test_efbig(tree):
    """The embedded backend's limit is 64 MiB: one byte past it fails at
    write(), and the value stays as it was."""
    limit = 64 * 1024 * 1024
    fails_with(f"dd if=/dev/zero of={tree}/theme bs=1 count=1 seek={limit} conv=notrunc",
               errno.EFBIG)
    fails_with(f"truncate -s {limit + 1} {tree}/theme", errno.EFBIG)
    assert read(f"{tree}/theme") == "dark"
    run(f"truncate -s {limit} {tree}/theme")
    assert os.stat(f"{tree}/theme").st_size == limit


def test_eperm(tree):
    fails_with(f"mkdir {tree}/sub", errno.EPERM)
    fails_with(f"ln {tree}/theme {tree}/hard", errno.EPERM)
    fails_with(f"ln -s theme {tree}/soft", errno.EPERM)
    fails_with(f"rm {tree}/../@channel", errno.EPERM)  # a channel stays until unmount


def test_eacces_status_is_read_only(mount):
    fails_with(f"echo x > {mount.path}/.conatfs/status", errno.EACCES)


def test_erofs(mount_factory, tmp_path):
    m = mount_factory()
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    write(f"{d}/k", "v")
    m.unmount()
    ro = mount_factory(options=["ro"], mountpoint=m.path)
    assert read(f"{d}/k") == "v"
    fails_with(f"echo x > {d}/k", errno.EROFS)
    fails_with(f"rm {d}/k", errno.EROFS)
    fails_with(f"mkdir {d}/../t", errno.EROFS)
    fails_with(f"touch {d}/new", errno.EROFS)
    assert ro.proc.poll() is None
