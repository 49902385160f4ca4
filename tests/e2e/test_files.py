"""Keys as files (DESIGN §2): values round-trip, every command of the table."""
import concurrent.futures
import errno
import json
import os
import subprocess
import time

from util import conat_kv, read, run, wait_until, write


def confirmed_revision(path):
    """user.conat.revision, or None until the server confirmed the value."""
    try:
        return int(os.getxattr(path, "user.conat.revision"))
    except OSError as e:
        assert e.errno == errno.ENODATA
        return None


def test_echo_cat_round_trip(store):
    key = os.path.join(store, "theme")
    run(f"echo dark > {key}")
    assert run(f"cat {key}").stdout == "dark\n"
    revision = wait_until(lambda: confirmed_revision(key), what="confirmation")
    run(f"echo light > {key}")  # the shell's redirect: open, dup2, close, write, close
    assert run(f"cat {key}").stdout == "light\n"
    assert wait_until(lambda: confirmed_revision(key) != revision and confirmed_revision(key),
                      what="confirmation") == revision + 1  # one set, not "" then "light"


def test_cp_512k_and_cmp(store, tmp_path):
    src = tmp_path / "big"
    src.write_bytes(os.urandom(512 * 1024))
    run(f"cp {src} {store}/big")
    run(f"cmp {src} {store}/big")
    assert os.stat(f"{store}/big").st_size == 512 * 1024


def test_all_byte_values(store):
    data = bytes(range(256)) * 3
    write(f"{store}/bytes", data, "wb")
    assert read(f"{store}/bytes", "rb") == data


def test_ls_10000_keys_set_elsewhere(mount_factory, backend):
    """ls shows every key, including ones this mount never touched."""
    conat_kv(backend.data, "fill", "project-x", "many", "10000")
    m = mount_factory()
    names = run(f"ls {m.path}/project-x/many").stdout.split()
    assert len(names) == 10000
    assert set(names) == {f"key-{i}" for i in range(10000)}
    assert read(f"{m.path}/project-x/many/key-9999") == "v9999"


def test_rm(store):
    write(f"{store}/k", "v")
    run(f"rm {store}/k")
    assert not os.path.exists(f"{store}/k")
    assert os.listdir(store) == []


def test_close_then_rm_leaves_nothing(store):
    """A file made and closed without a write is saved by the RELEASE the
    kernel sends after close() returned; an rm right after must still win,
    for keys (vim makes and removes .FILE.swpx so) and for editors' local
    files alike."""
    for i in range(400):
        for name in (f"k{i}", f".k{i}.swp"):
            path = os.path.join(store, name)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL))
            os.unlink(path)
    assert os.listdir(store) == []


def test_mv_in_one_store(store):
    write(f"{store}/a", "va")
    write(f"{store}/b", "old")
    run(f"mv {store}/a {store}/b")
    assert os.listdir(store) == ["b"]
    assert read(f"{store}/b") == "va"


def test_mv_across_stores(mount, store):
    other = os.path.join(mount.path, "project-y", "other")
    os.makedirs(other)
    write(f"{store}/a", "va")
    run(f"mv {store}/a {other}/moved")
    assert os.listdir(store) == []
    assert os.listdir(other) == ["moved"]
    assert read(f"{other}/moved") == "va"


def test_touch_makes_an_empty_key(store):
    run(f"touch {store}/new")
    assert os.listdir(store) == ["new"]
    assert os.stat(f"{store}/new").st_size == 0
    run(f"touch {store}/new")  # touching an existing key keeps it
    assert read(f"{store}/new") == ""


def test_truncate(store):
    write(f"{store}/k", "0123456789")
    run(f"truncate -s 4 {store}/k")
    assert read(f"{store}/k") == "0123"
    run(f"truncate -s 6 {store}/k")
    assert read(f"{store}/k", "rb") == b"0123\0\0"
    with open(f"{store}/k", "r+") as f:
        f.truncate(2)
    assert read(f"{store}/k") == "01"


def test_append(store):
    run(f"echo one > {store}/log")
    run(f"echo two >> {store}/log")
    run(f"echo three >> {store}/log")
    assert read(f"{store}/log") == "one\ntwo\nthree\n"


def test_write_at_offset_fills_holes(store):
    fd = os.open(f"{store}/k", os.O_WRONLY | os.O_CREAT)
    os.pwrite(fd, b"end", 5)
    os.pwrite(fd, b"ab", 0)
    os.close(fd)
    assert read(f"{store}/k", "rb") == b"ab\0\0\0end"


def test_many_writes_are_one_set_on_close(store):
    """Until close, the old value stays; the writer reads its own buffer;
    the close sets the whole value once (one new revision)."""
    write(f"{store}/k", "old")
    revision = wait_until(lambda: confirmed_revision(f"{store}/k"), what="confirmation")
    with open(f"{store}/k", "w+") as f:
        for i in range(100):
            f.write(f"{i},")
            f.flush()
        assert read(f"{store}/k") == "old"  # other readers: the value until close
        f.seek(0)
        assert f.read().startswith("0,1,2,")
    assert read(f"{store}/k") == "".join(f"{i}," for i in range(100))
    assert wait_until(lambda: confirmed_revision(f"{store}/k"), what="confirmation") \
        == revision + 1


def test_open_file_keeps_reading_a_deleted_key(store):
    write(f"{store}/k", "kept")
    with open(f"{store}/k") as f:
        os.unlink(f"{store}/k")
        assert f.read() == "kept"
    assert not os.path.exists(f"{store}/k")


def test_fsync(store):
    fd = os.open(f"{store}/k", os.O_WRONLY | os.O_CREAT)
    os.write(fd, b"saved")
    os.fsync(fd)
    os.close(fd)
    assert read(f"{store}/k") == "saved"


def test_stat(store):
    before = time.time()
    write(f"{store}/k", "12345")
    st = os.stat(f"{store}/k")
    assert st.st_size == 5
    assert st.st_mode == 0o100644
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert before - 2 <= st.st_mtime <= time.time() + 2
    assert os.stat(store).st_mode == 0o40755
    out = run(f"ls -l {store}").stdout
    assert "-rw-r--r--" in out and " 5 " in out


def test_getfattr(store):
    write(f"{store}/k", "v")
    revision = wait_until(lambda: confirmed_revision(f"{store}/k"), what="confirmation")
    out = run(f"getfattr -d {store}/k").stdout
    assert 'user.conat.name="k"' in out
    assert f'user.conat.revision="{revision}"' in out
    when = int(os.getxattr(f"{store}/k", "user.conat.time"))
    assert abs(when / 1000 - time.time()) < 60
    write(f"{store}/k", "w")
    wait_until(lambda: (confirmed_revision(f"{store}/k") or 0) > revision,
               what="a newer revision")
    assert os.getxattr(store, "user.conat.ephemeral") == b"0"
    assert os.getxattr(store, "user.conat.name") == b"settings"


def test_chmod_chown_utime_succeed(store):
    """Editors and cp -p set them; they change nothing and must not fail."""
    write(f"{store}/k", "v")
    run(f"chmod 600 {store}/k && chown {os.getuid()} {store}/k && touch -d @0 {store}/k")
    run(f"cp -p {store}/k {store}/copy")
    assert read(f"{store}/copy") == "v"


def test_mkdir_rmdir(mount):
    run(f"mkdir {mount.path}/scope-a")
    run(f"mkdir {mount.path}/scope-a/store-a")
    assert sorted(os.listdir(mount.path)) == [".conatfs", "scope-a"]
    assert os.listdir(f"{mount.path}/scope-a") == ["store-a"]
    run(f"rmdir {mount.path}/scope-a/store-a")
    run(f"rmdir {mount.path}/scope-a")
    assert sorted(os.listdir(mount.path)) == [".conatfs"]


def test_rm_r_and_mv_of_a_store(mount):
    """rmdir right after the deletes that emptied a store; mv of a store
    (EXDEV: mv copies the keys, deletes them and removes the store)."""
    scope = os.path.join(mount.path, "p")
    os.makedirs(f"{scope}/a")
    for i in range(20):
        write(f"{scope}/a/k{i}", f"v{i}")
    run(f"mv {scope}/a {scope}/b")
    assert os.listdir(scope) == ["b"]
    assert read(f"{scope}/b/k7") == "v7"
    run(f"rm -r {scope}/b")
    assert os.listdir(scope) == []


def test_status(mount, store):
    write(f"{store}/k", "v")
    status = json.loads(read(f"{mount.path}/.conatfs/status"))
    assert status["backend"] == "embedded"
    assert status["connected"] is True
    assert status["pending"] >= 0
    assert {"scope": "project-x", "store": "settings"} in [
        {"scope": s["scope"], "store": s["store"]} for s in status["stores"]]
    wait_until(lambda: json.loads(read(f"{mount.path}/.conatfs/status"))["pending"] == 0,
               what="pending writes to be saved")
    assert os.listdir(f"{mount.path}/.conatfs") == ["status"]


def test_python_os_calls(store):
    """The same through plain os calls, the way programs use files."""
    fd = os.open(f"{store}/k", os.O_RDWR | os.O_CREAT | os.O_EXCL)
    assert os.write(fd, b"hello") == 5
    assert os.pread(fd, 5, 0) == b"hello"
    assert os.fstat(fd).st_size == 5
    os.close(fd)
    os.rename(f"{store}/k", f"{store}/k2")
    assert os.listdir(store) == ["k2"]
    os.remove(f"{store}/k2")
    assert os.listdir(store) == []


def test_second_mount_process_sees_values(mount, store):
    """Another process reads what one wrote, as soon as it closed the file."""
    write(f"{store}/k", "v1")
    out = subprocess.run(["cat", f"{store}/k"], capture_output=True, text=True).stdout
    assert out == "v1"


def test_kernel_forgets_and_asks_again(store):
    """After the kernel drops its inodes (FORGET), every name still works."""
    for i in range(200):
        write(f"{store}/k{i}", f"v{i}")
    fds = [os.open(f"{store}/k{i}", os.O_RDONLY) for i in range(3)]
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")
    assert [os.pread(fd, 10, 0) for fd in fds] == [b"v0", b"v1", b"v2"]
    for fd in fds:
        os.close(fd)
    assert len(os.listdir(store)) == 200
    assert all(read(f"{store}/k{i}") == f"v{i}" for i in range(200))


def test_parallel_writers_and_readers(store):
    """Threads writing, reading, listing and renaming at once.  A reader of a
    key being rewritten sees a whole value, or nothing while a writer has it
    truncated (as on any file system), never a mix."""
    whole = {str(m) * 1000 for m in range(8)} | {""}

    def worker(n):
        for i in range(50):
            write(f"{store}/w{n}", f"{n}:{i}")
            assert read(f"{store}/w{n}") == f"{n}:{i}"
            write(f"{store}/shared", str(n) * 1000)
            assert read(f"{store}/shared") in whole
            os.listdir(store)
            os.rename(f"{store}/w{n}", f"{store}/r{n}")
            os.rename(f"{store}/r{n}", f"{store}/w{n}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    assert sorted(os.listdir(store)) == sorted(["shared"] + [f"w{n}" for n in range(8)])
