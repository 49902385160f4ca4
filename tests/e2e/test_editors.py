"""Editors and file tools (DESIGN §2): vim, sed -i, cp, rsync and
save-by-rename work, and their swap, backup and temporary files never become
keys."""
import os
import pty
import select
import shutil
import time

from util import DEADLINE, conat_kv, read, run, wait_until, write

VIM = shutil.which("vim") or shutil.which("vim.tiny") or "vi"


def keys_behind(m, backend, scope, store):
    """The keys the backend holds, once the daemon M has stopped."""
    m.unmount()
    return conat_kv(backend.data, "keys", scope, store).decode().splitlines()


def test_vim_scripted_edit(mount_factory, backend):
    m = mount_factory()
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    write(f"{d}/theme", "dark\nsize=12\n")
    run(f"{VIM} -u NONE -N -es -c '%s/dark/light/' -c 'wq' {d}/theme")
    assert read(f"{d}/theme") == "light\nsize=12\n"
    assert os.listdir(d) == ["theme"]
    assert keys_behind(m, backend, "p", "s") == ["theme"]


class Terminal:
    """A program running on a pseudo-terminal, its output drained."""

    def __init__(self, argv, cwd):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(cwd)
            os.environ["TERM"] = "xterm"
            os.execvp(argv[0], argv)
        self.output = b""

    def drain(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                try:
                    self.output += os.read(self.fd, 65536)
                except OSError:
                    return

    def type(self, text):
        os.write(self.fd, text.encode())

    def wait(self):
        end = time.monotonic() + DEADLINE
        while time.monotonic() < end:
            self.drain(0.05)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        raise AssertionError(f"{self.output[-2000:]!r}")


def test_vim_interactive_edit(mount_factory, backend):
    """vim on a terminal: its swap file shows in the store while it runs,
    and only the edited key is left afterwards."""
    m = mount_factory()
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    write(f"{d}/notes", "first\n")
    vim = Terminal([VIM, "-u", "NONE", "-N", "notes"], cwd=d)

    def swap_shown():
        vim.drain(0.05)
        return ".notes.swp" in os.listdir(d)

    wait_until(swap_shown, what="vim's swap file")
    vim.type("Gosecond\x1b:wq\r")
    assert vim.wait() == 0
    assert read(f"{d}/notes") == "first\nsecond\n"
    assert os.listdir(d) == ["notes"]
    assert keys_behind(m, backend, "p", "s") == ["notes"]


def test_sed_in_place(mount_factory, backend):
    m = mount_factory()
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    write(f"{d}/conf", "mode=dark\n")
    run(f"sed -i s/dark/light/ {d}/conf")
    assert read(f"{d}/conf") == "mode=light\n"
    assert os.listdir(d) == ["conf"]
    assert keys_behind(m, backend, "p", "s") == ["conf"]


def test_rsync(mount_factory, backend, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}").write_text(f"content {i}\n" * 100)
    m = mount_factory()
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    run(f"rsync -a {src}/ {d}/")
    run(f"rsync -rc {src}/ {d}/")  # compares checksums: reads every key back
    (src / "f0").write_text("changed\n")
    run(f"rsync {src}/f0 {d}/f0")
    assert read(f"{d}/f0") == "changed\n"
    assert sorted(os.listdir(d)) == [f"f{i}" for i in range(5)]
    assert keys_behind(m, backend, "p", "s") == [f"f{i}" for i in range(5)]


def test_save_by_rename_and_local_files(mount_factory, backend):
    m = mount_factory()
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    write(f"{d}/.theme.tmp", "dark")
    write(f"{d}/theme~", "backup")
    write(f"{d}/#theme#", "autosave")
    assert sorted(os.listdir(d)) == ["#theme#", ".theme.tmp", "theme~"]
    assert read(f"{d}/theme~") == "backup"
    run(f"mv {d}/.theme.tmp {d}/theme")  # local -> key: the editor's save
    run(f"cp {d}/theme {d}/.#theme")
    run(f"mv {d}/theme {d}/theme.orig~")  # key -> local: leaves the store
    run(f"mv {d}/theme.orig~ {d}/theme")
    run(f"rm {d}/#theme#")
    assert sorted(os.listdir(d)) == [".#theme", "theme", "theme~"]
    assert read(f"{d}/theme") == "dark"
    assert keys_behind(m, backend, "p", "s") == ["theme"]

    m2 = mount_factory(mountpoint=m.path)  # local files live in memory only
    assert os.listdir(d) == ["theme"]
    m2.unmount()


def test_local_patterns_option(mount_factory, backend):
    m = mount_factory(options=["local_patterns=*.bak:scratch*"])
    d = os.path.join(m.path, "p", "s")
    os.makedirs(d)
    for name in ["a.bak", "scratch1", "b~", "4913"]:
        write(f"{d}/{name}", name)
    assert sorted(os.listdir(d)) == ["4913", "a.bak", "b~", "scratch1"]
    assert keys_behind(m, backend, "p", "s") == ["4913", "b~"]
