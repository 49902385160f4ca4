"""conatfs as a Linux tool: the man page, --help, and mount(8)/fstab."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import conatfs_mounts, conatfs_processes
from util import CONATFS, read, run, wait_until, write

SOURCE_ROOT = os.environ["SOURCE_ROOT"]
MAN_PAGE = os.environ["CONATFS_MAN"]


def accepted_options():
    """Every long option and -o NAME= alias the daemon's source accepts."""
    src = read(os.path.join(SOURCE_ROOT, "fs", "main.c"))
    longs = re.findall(r'^\s*\{\s*"([a-z-]+)",\s*\'?.?\'?,?\s*[0-9]', src, re.M)
    aliases = re.findall(r'\{\s*"([a-z_]+)=",\s*&opt\.', src)
    assert "server" in longs and "tls-key" in longs, longs
    assert "server" in aliases and "replicas" not in aliases, aliases
    return longs, aliases + ["replicas", "local_patterns"]


def test_help_lists_every_option():
    longs, aliases = accepted_options()
    out = run(f"{CONATFS} --help").stdout
    for name in longs:
        assert f"--{name}" in out, f"--{name} missing from --help"
    for name in aliases:
        assert f"{name}=" in out, f"-o {name}= missing from --help"
    assert "MOUNTPOINT" in out


def test_man_page_renders_and_documents_every_option():
    res = subprocess.run(["man", "--warnings", "-l", MAN_PAGE], capture_output=True, text=True,
                         env={**os.environ, "MANWIDTH": "80"}, timeout=60)
    assert res.returncode == 0
    assert res.stderr == "", res.stderr
    page = res.stdout
    longs, aliases = accepted_options()
    for name in longs:
        assert f"--{name}" in page, f"--{name} missing from the man page"
    for name in aliases:
        assert f"{name}=" in page, f"{name}= missing from the man page"
    for section in ("THE TREE", "SEMANTICS", "ERRORS", "INTEROPERABILITY", "EXAMPLES"):
        assert section in page


@pytest.fixture
def conatfs_on_path():
    """mount(8) runs helpers with a fixed PATH: put the daemon on it for the test."""
    link = "/usr/local/bin/conatfs"
    if os.path.lexists(link):
        assert os.path.realpath(link) == os.path.realpath(CONATFS), f"{link} is another conatfs"
        yield link
        return
    os.symlink(os.path.realpath(CONATFS), link)
    try:
        yield link
    finally:
        os.unlink(link)


def test_mount_helper_fstab_style(tmp_path, conatfs_on_path):
    mnt, data = tmp_path / "mnt", tmp_path / "data"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "fuse.conatfs", "conatfs", str(mnt),
                          "-o", f"data={data},nofail,_netdev,default_permissions"],
                         capture_output=True, text=True, timeout=60)
    try:
        assert res.returncode == 0, res.stderr
        assert str(mnt) in conatfs_mounts()
        os.makedirs(mnt / "project-x" / "settings")
        write(mnt / "project-x" / "settings" / "theme", "dark\n")
        assert read(mnt / "project-x" / "settings" / "theme") == "dark\n"
        assert os.path.isfile(data / "conat.db")
    finally:
        umount = subprocess.run(["umount", str(mnt)], capture_output=True, text=True)
    assert umount.returncode == 0, umount.stderr
    wait_until(lambda: not conatfs_processes(), what="the daemon to exit after umount")
    assert str(mnt) not in conatfs_mounts()
