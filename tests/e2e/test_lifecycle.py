"""The daemon's life (DESIGN §5, §7): restarts keep persistent values and
drop ephemeral ones, fsync survives kill -9, signals and fusermount3 -u end
it cleanly, a stale mount is cleared, failures to start are one clear line."""
import os
import signal
import subprocess

import pytest

from conftest import conatfs_processes
from util import CONATFS, conat_kv, read, run, wait_until, write


def test_restart_keeps_persistent_drops_ephemeral(mount_factory):
    m = mount_factory()
    kept = os.path.join(m.path, "p", "kept")
    gone = os.path.join(m.path, "p", "gone")
    os.makedirs(kept)
    os.makedirs(gone)
    run(f"setfattr -n user.conat.ephemeral -v 1 {gone}")
    assert os.getxattr(gone, "user.conat.ephemeral") == b"1"
    write(f"{kept}/k", "persistent")
    write(f"{gone}/k", "ephemeral")
    assert read(f"{gone}/k") == "ephemeral"
    m.unmount()

    m2 = mount_factory(mountpoint=m.path)
    assert read(f"{kept}/k") == "persistent"
    assert not os.path.exists(f"{gone}/k")


def test_ephemeral_only_while_empty(store):
    write(f"{store}/k", "v")
    res = run(f"setfattr -n user.conat.ephemeral -v 1 {store}", check=False)
    assert res.returncode != 0 and os.strerror(16) in res.stderr  # EBUSY
    res = run(f"setfattr -n user.conat.ephemeral -v yes {store}", check=False)
    assert res.returncode != 0


def test_kill_9_after_fsync(mount_factory):
    m = mount_factory()
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    fd = os.open(f"{d}/k", os.O_WRONLY | os.O_CREAT)
    os.write(fd, b"durable")
    os.fsync(fd)
    m.kill()
    with pytest.raises(OSError):  # the dead daemon's mount: ENOTCONN
        os.stat(m.path)
    try:
        os.close(fd)  # closes, but the flush fails: ENOTCONN
    except OSError:
        pass

    m2 = mount_factory(mountpoint=m.path)  # clears the stale mount
    assert read(f"{d}/k") == "durable"
    assert "stale mount" in m2.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_and_saves(mount_factory, backend, signum):
    m = mount_factory()
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    write(f"{d}/k", "v")
    m.stop(signum)  # exit code 0, mount gone
    assert conat_kv(backend.data, "get", "p", "s", "k") == b"v"


def test_fusermount_unmounts_and_saves(mount_factory, backend):
    m = mount_factory()
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    write(f"{d}/k", "v")
    m.unmount()  # exit code 0, mount gone
    assert conat_kv(backend.data, "get", "p", "s", "k") == b"v"


def test_background_daemon(tmp_path, backend):
    """Without -f: the command returns once mounted, and the daemon ends
    when unmounted."""
    mnt = tmp_path / "bg"
    mnt.mkdir()
    before = set(conatfs_processes())
    res = subprocess.run([CONATFS, *backend.args, str(mnt)], capture_output=True, text=True,
                         timeout=30)
    try:
        assert res.returncode == 0, res.stderr
        assert os.path.ismount(mnt)
        assert res.stderr == ""
        os.makedirs(mnt / "p" / "s")
        write(mnt / "p" / "s" / "k", "v")
        assert read(mnt / "p" / "s" / "k") == "v"
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)])
    wait_until(lambda: set(conatfs_processes()) <= before, what="the daemon to end")
    assert not os.path.ismount(mnt)


def test_backend_failure_is_one_line(mount_factory, tmp_path):
    m = mount_factory()  # holds the data directory
    other = tmp_path / "other"
    other.mkdir()
    res = subprocess.run([CONATFS, "-f", *mount_factory.backend.args, str(other)],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert len(res.stderr.splitlines()) == 1
    assert res.stderr.startswith("conatfs: cannot open the embedded backend")
    assert not os.path.ismount(other)


@pytest.mark.parametrize("args,message", [
    ([], "MOUNTPOINT"),
    (["/nonexistent/mnt"], "No such file or directory"),
    (["--bogus", "x"], "bogus"),
])
def test_bad_command_lines(tmp_path, args, message):
    res = subprocess.run([CONATFS, "-f", "--data", str(tmp_path / "d"), *args],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert message in res.stderr
    assert len(res.stderr.splitlines()) == 1


def test_help_and_version():
    res = subprocess.run([CONATFS, "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "local_patterns" in res.stdout and "--server" in res.stdout
    res = subprocess.run([CONATFS, "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("conatfs ")
