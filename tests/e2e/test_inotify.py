"""inotify events for changes made elsewhere (DESIGN §4, issue 5).

Mounts share one nats-server.  A change made through another mount, or by
an independent NATS client (nats.js), must raise on this mount the events a
local change would: CREATE for a new key, MODIFY and CLOSE_WRITE for a new
value, DELETE for a deleted key, CREATE/DELETE with ISDIR for stores made or
removed elsewhere.  Two independent inotify clients watch: inotifywait, and
the raw syscalls through ctypes.
"""
import ctypes
import json
import os
import random
import signal
import struct
import subprocess
import threading

import pytest

from conftest import Backend
from natsfixtures import kvjs, settle_echoes  # noqa: F401 (settle_echoes: fixture)
from util import DEADLINE, read, run, wait_explained, wait_until, write

# An unmount while an echo runs through the mountpoint fails with EBUSY.
pytestmark = pytest.mark.usefixtures("settle_echoes")



@pytest.fixture
def backend(nats_server):
    return Backend("nats", ["--server", nats_server])


# ----------------------------------------------------------------- watchers

class Inotifywait:
    """`inotifywait -m -r ROOT`; events() gives (path relative to ROOT,
    frozenset of event names) in order."""

    def __init__(self, root, log_dir):
        self.root = root.rstrip("/") + "/"
        self.out = os.path.join(log_dir, "events.txt")
        self.err = os.path.join(log_dir, "inotifywait.err")
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                ["inotifywait", "-m", "-r", "--format", "%w%f\t%e", self.root],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        wait_until(lambda: self.proc.poll() is not None or "Watches established" in read(self.err),
                   what="inotifywait to set up its watches")
        assert self.proc.poll() is None, read(self.err)

    def events(self):
        events = []
        for line in read(self.out).splitlines():
            path, names = line.rsplit("\t", 1)
            events.append((path[len(self.root):], frozenset(names.split(","))))
        return events

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(DEADLINE)


class InotifySyscalls:
    """inotify_init1 / inotify_add_watch / read through ctypes, with
    struct inotify_event parsed by hand; one watch per directory given."""

    NAMES = {0x1: "ACCESS", 0x2: "MODIFY", 0x4: "ATTRIB", 0x8: "CLOSE_WRITE",
             0x10: "CLOSE_NOWRITE", 0x20: "OPEN", 0x40: "MOVED_FROM", 0x80: "MOVED_TO",
             0x100: "CREATE", 0x200: "DELETE", 0x400: "DELETE_SELF", 0x800: "MOVE_SELF",
             0x2000: "UNMOUNT", 0x4000: "Q_OVERFLOW", 0x8000: "IGNORED",
             0x40000000: "ISDIR"}
    IN_ALL_EVENTS = 0xfff
    HEADER = struct.Struct("iIII")  # wd, mask, cookie, len

    def __init__(self, root, dirs):
        self.root = root.rstrip("/") + "/"
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        self.wds = {}
        for d in dirs:
            wd = self.libc.inotify_add_watch(self.fd, os.fsencode(d), self.IN_ALL_EVENTS)
            assert wd >= 0, os.strerror(ctypes.get_errno())
            self.wds[wd] = d.rstrip("/") + "/"
        self.seen = []

    def events(self):
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return list(self.seen)
            off = 0
            while off < len(buf):
                wd, mask, _cookie, length = self.HEADER.unpack_from(buf, off)
                off += self.HEADER.size
                name = buf[off:off + length].rstrip(b"\0").decode()
                off += length
                names = frozenset(n for bit, n in self.NAMES.items() if mask & bit)
                self.seen.append(((self.wds.get(wd, "?") + name)[len(self.root):], names))

    def stop(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@pytest.fixture
def watchers(tmp_path):
    """Makes watchers; stops them all before the mounts go."""
    made = []

    class Make:
        @staticmethod
        def inotifywait(root):
            log_dir = tmp_path / f"watch{len(made)}"
            log_dir.mkdir()
            made.append(Inotifywait(root, str(log_dir)))
            return made[-1]

        @staticmethod
        def syscalls(root, dirs):
            made.append(InotifySyscalls(root, dirs))
            return made[-1]

    yield Make
    for w in made:
        w.stop()


CHANGES = frozenset({"CREATE", "MODIFY", "CLOSE_WRITE", "DELETE"})


def names_of(events, path):
    return [names for p, names in events if p == path]


def saw_in_order(watcher, path, wanted):
    """TRUE once the events on PATH hold WANTED (names) in this order."""
    i = 0
    for names in names_of(watcher.events(), path):
        if i < len(wanted) and wanted[i] in names:
            i += 1
    return i == len(wanted)


def wait_events(watcher, path, wanted):
    wait_until(lambda: saw_in_order(watcher, path, wanted),
               what=f"{' '.join(wanted)} on {path}; saw {names_of(watcher.events(), path)}")


# ------------------------------------------------------------------ mounts

def status(daemon):
    return json.loads(read(os.path.join(daemon.path, ".conatfs", "status")))


def settled(*daemons):
    """Nothing left to save, and no echo queued, on every mount."""
    for d in daemons:
        s = status(d)
        if s["pending"] != 0 or s["echoes_pending"] != 0:
            return False
    return True


def wait_dir_polls(daemon, passes=2):
    """Waits until DAEMON listed scopes and stores PASSES more times (its
    lists of the directories the kernel knows now are taken)."""
    start = status(daemon)["dir_polls"]
    wait_until(lambda: status(daemon)["dir_polls"] >= start + passes, what="the store poller")


def shows(path, value):
    try:
        return read(path) == value
    except FileNotFoundError:
        return value is None


@pytest.fixture
def pair(mount_factory):
    """Two mounts of one server with the store p/s; (a, b, store in a,
    store in b)."""
    a, b = mount_factory(), mount_factory()
    da, db = (os.path.join(m.path, "p", "s") for m in (a, b))
    os.makedirs(da)
    wait_until(lambda: os.path.isdir(db), what="the store to show in the other mount")
    return a, b, da, db


# ------------------------------------------------------------------- tests

def test_inotifywait_sees_changes_made_through_another_mount(pair, watchers):
    a, b, da, db = pair
    w = watchers.inotifywait(b.path)
    write(f"{da}/k", "v1")
    wait_events(w, "p/s/k", ["CREATE", "CLOSE_WRITE"])
    write(f"{da}/k", "a longer value")
    wait_events(w, "p/s/k", ["CREATE", "CLOSE_WRITE", "MODIFY", "CLOSE_WRITE"])
    os.unlink(f"{da}/k")
    wait_events(w, "p/s/k", ["CREATE", "MODIFY", "CLOSE_WRITE", "DELETE"])
    write(f"{da}/empty", "")  # an empty value: ftruncate raises the MODIFY
    wait_events(w, "p/s/empty", ["CREATE", "MODIFY", "CLOSE_WRITE"])
    assert read(f"{db}/empty") == ""
    wait_until(lambda: settled(a, b), what="both mounts to settle")
    assert sorted(os.listdir(db)) == ["empty"]


def test_stores_and_scopes_made_and_removed_elsewhere(pair, watchers):
    a, b, da, db = pair
    w = watchers.inotifywait(b.path)
    wait_dir_polls(b)  # B's poller knows the tree its watcher looked up
    os.mkdir(os.path.join(a.path, "p", "s2"))
    wait_events(w, "p/s2", ["CREATE"])
    assert "ISDIR" in names_of(w.events(), "p/s2")[0]
    write(os.path.join(a.path, "p", "s2", "k"), "in the new store")
    wait_events(w, "p/s2/k", ["CREATE", "CLOSE_WRITE"])  # inotifywait -r watches it now
    os.unlink(os.path.join(a.path, "p", "s2", "k"))
    wait_until(lambda: not os.path.exists(os.path.join(b.path, "p", "s2", "k")),
               what="the key to go")
    os.rmdir(os.path.join(a.path, "p", "s2"))
    wait_events(w, "p/s2", ["CREATE", "DELETE"])
    assert {"DELETE", "ISDIR"} <= names_of(w.events(), "p/s2")[-1]
    assert not os.path.exists(os.path.join(b.path, "p", "s2"))

    os.makedirs(os.path.join(a.path, "q", "t"))  # a scope, with a store in it
    wait_events(w, "q", ["CREATE"])
    wait_events(w, "q/t", ["CREATE"])
    assert os.listdir(os.path.join(b.path, "q")) == ["t"]

    # This mount's own mkdir and rmdir raise their events once.
    os.mkdir(os.path.join(b.path, "p", "mine"))
    os.rmdir(os.path.join(b.path, "p", "mine"))
    wait_dir_polls(b)
    assert [sorted(n - {"ISDIR"}) for n in names_of(w.events(), "p/mine")
            if n & {"CREATE", "DELETE"}] == [["CREATE"], ["DELETE"]]


def test_a_store_looked_up_before_the_poller_saw_it_keeps_its_watchers(pair, watchers):
    a, b, da, db = pair  # B looked p/s up before its poller listed it
    w = watchers.syscalls(b.path, [db])
    wait_dir_polls(b)  # finds p and p/s made elsewhere: no echo may cut the watch off
    write(f"{da}/k", "after the poll")
    wait_events(w, "p/s/k", ["CREATE", "CLOSE_WRITE"])


def test_inotifywait_sees_changes_made_by_a_nats_client(mount_factory, watchers, nats_server):
    b = mount_factory()
    db = os.path.join(b.path, "p", "s")
    os.makedirs(db)
    w = watchers.inotifywait(b.path)

    kvjs(nats_server, "put", "conat_p-s", "k", input=b"from node")
    wait_events(w, "p/s/k", ["CREATE", "CLOSE_WRITE"])
    assert read(f"{db}/k") == "from node"
    kvjs(nats_server, "put", "conat_p-s", "k", input=b"changed by node")
    wait_events(w, "p/s/k", ["CREATE", "CLOSE_WRITE", "MODIFY", "CLOSE_WRITE"])
    assert read(f"{db}/k") == "changed by node"
    kvjs(nats_server, "del", "conat_p-s", "k")
    wait_events(w, "p/s/k", ["CREATE", "MODIFY", "CLOSE_WRITE", "DELETE"])
    assert not os.path.exists(f"{db}/k")


def test_cat_and_stat_show_a_remote_change_at_once(pair, watchers):
    a, b, da, db = pair
    write(f"{da}/k", "short")
    write(f"{da}/same", "unchanged")
    wait_until(lambda: shows(f"{db}/k", "short"), what="the value")
    wait_until(lambda: os.path.exists(f"{db}/same") and settled(a, b), what="the other key")
    assert os.stat(f"{db}/k").st_size == 5  # now in B's kernel caches
    os.stat(f"{db}/same")  # (only stat: a read makes the kernel ask for atime again)
    w = watchers.syscalls(b.path, [db])

    write(f"{da}/k", "a much longer value")
    wait_events(w, "p/s/k", ["CLOSE_WRITE"])
    # At the event, without waiting: no stale page or attribute cache.
    assert os.stat(f"{db}/k").st_size == len("a much longer value")
    assert read(f"{db}/k") == "a much longer value"
    write(f"{da}/k", "tiny")
    wait_events(w, "p/s/k", ["CLOSE_WRITE", "CLOSE_WRITE"])
    assert read(f"{db}/k") == "tiny"
    assert os.stat(f"{db}/k").st_size == 4

    # Unchanged keys are served by the kernel: stat answers with the daemon
    # stopped (entry and attribute timeouts are long).
    dir_fd = os.open(db, os.O_RDONLY | os.O_DIRECTORY)
    result = {}
    t = threading.Thread(target=lambda: result.update(st=os.stat("same", dir_fd=dir_fd)))
    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        t.start()
        t.join(DEADLINE)
        served_by_kernel = not t.is_alive()
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
        t.join()
        os.close(dir_fd)
    assert served_by_kernel, "stat of an unchanged key went to the daemon"
    assert result["st"].st_size == len("unchanged")


def test_own_write_raises_no_second_event(pair, watchers):
    a, b, da, db = pair
    write(f"{da}/old", "before")
    wait_until(lambda: shows(f"{db}/old", "before"), what="the value")
    w = watchers.inotifywait(a.path)
    run(f"echo v > {da}/new")
    run(f"echo v2 > {da}/old")
    wait_until(lambda: shows(f"{db}/new", "v\n") and shows(f"{db}/old", "v2\n"),
               what="the other mount to see both values")
    wait_until(lambda: status(a)["pending"] == 0, what="A to save")
    # A barrier: a change from B after A's writes; A's changes arrive in
    # server order, so once A echoed this one it has had its own echoes.
    write(f"{db}/marker", "m")
    wait_events(w, "p/s/marker", ["CREATE", "CLOSE_WRITE"])
    wait_until(lambda: settled(a), what="A to settle")

    events = w.events()
    new = names_of(events, "p/s/new")
    assert [n for n in new if n & CHANGES] == [
        {"CREATE"}, {"MODIFY"}, {"CLOSE_WRITE", "CLOSE"}], new
    old = names_of(events, "p/s/old")
    assert sum("CLOSE_WRITE" in n for n in old) == 1, old
    assert "CLOSE_WRITE" in old[-1], old  # nothing after the writer's close
    assert not any(n & {"CREATE", "DELETE"} for n in old), old


def test_channel_file_gets_a_modify_per_message_from_elsewhere(pair, watchers):
    a, b, da, db = pair
    chat_a, chat_b = (os.path.join(m.path, "p", "@chat") for m in (a, b))
    open(chat_b, "a").close()  # B subscribes
    open(chat_a, "a").close()
    w = watchers.syscalls(b.path, [os.path.join(b.path, "p")])
    with open(chat_a, "a") as f:
        f.write("hello from a\n")
    wait_events(w, "p/@chat", ["MODIFY"])
    wait_until(lambda: read(chat_b).endswith("hello from a\n"), what="the message on b")
    with open(chat_a, "a") as f:
        f.write("second\n")
    wait_events(w, "p/@chat", ["MODIFY", "MODIFY"])
    assert read(chat_b).endswith("hello from a\nsecond\n")  # the echo published nothing


def test_channel_stream_from_elsewhere_is_paced_and_still_ends_with_a_modify(pair, watchers):
    """A stream's echoes are paced (coalesced), but the watcher hears of the
    stream, the echoes settle, and a message right after it raises one more."""
    a, b, da, db = pair
    chat_a, chat_b = (os.path.join(m.path, "p", "@stream") for m in (a, b))
    open(chat_b, "a").close()  # B subscribes
    w = watchers.syscalls(b.path, [os.path.join(b.path, "p")])
    with open(chat_a, "a") as f:
        for i in range(300):
            f.write(f"message {i}\n")
            f.flush()
    wait_until(lambda: read(chat_b).endswith("message 299\n"), what="the stream on b")
    wait_events(w, "p/@stream", ["MODIFY"])
    wait_until(lambda: settled(b), what="b's echoes to settle")
    before = len(names_of(w.events(), "p/@stream"))
    with open(chat_a, "a") as f:
        f.write("last\n")
    wait_until(lambda: any("MODIFY" in n for n in names_of(w.events(), "p/@stream")[before:]),
               what="a MODIFY for the message after the stream")


def test_ctypes_watcher_sees_changes_made_elsewhere(pair, watchers):
    a, b, da, db = pair
    w = watchers.syscalls(b.path, [db])
    write(f"{da}/k", "one")
    wait_events(w, "p/s/k", ["CREATE", "CLOSE_WRITE"])
    write(f"{da}/k", "two")
    wait_events(w, "p/s/k", ["CREATE", "CLOSE_WRITE", "MODIFY", "CLOSE_WRITE"])
    assert read(f"{db}/k") == "two"
    os.unlink(f"{da}/k")
    wait_events(w, "p/s/k", ["CREATE", "MODIFY", "CLOSE_WRITE", "DELETE"])
    # a burst to one key: coalesced, but the last change always shows
    for i in range(200):
        write(f"{da}/burst", f"value {i}")
    wait_until(lambda: shows(f"{db}/burst", "value 199"), what="the last value")
    wait_until(lambda: settled(a, b), what="both mounts to settle")
    burst = [n for n in names_of(w.events(), "p/s/burst") if n & CHANGES]
    assert "CREATE" in burst[0] and "CLOSE_WRITE" in burst[-1], burst
    assert read(f"{db}/burst") == "value 199"


# ------------------------------------------------------------------ stress

KEYS = [f"k{i}" for i in range(40)]


def random_ops(store, seed, count):
    """COUNT random sets, deletes and creates on KEYS in STORE."""
    rng = random.Random(seed)
    for i in range(count):
        key = os.path.join(store, rng.choice(KEYS))
        op = rng.random()
        try:
            if op < 0.5:
                write(key, f"{seed}.{i}" * rng.randint(0, 3))
            elif op < 0.75:
                os.unlink(key)
            else:
                os.close(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        except (FileNotFoundError, FileExistsError):
            pass


def read_until(store, done):
    """Reads and stats random keys of STORE until DONE is set."""
    rng = random.Random()
    while not done.is_set():
        key = os.path.join(store, rng.choice(KEYS))
        try:
            os.stat(key)
            read(key)
        except FileNotFoundError:
            pass


def run_all(stores, readers):
    """667 random operations from each of STORES at once (2,001 in all),
    with a reader of each store if READERS; fails if one hangs."""
    done = threading.Event()
    writers = [threading.Thread(target=random_ops, args=(s, n, 667)) for n, s in enumerate(stores)]
    others = [threading.Thread(target=read_until, args=(s, done)) for s in stores if readers]
    for t in writers + others:
        t.start()
    for t in writers:
        t.join(60)
    done.set()
    for t in others:
        t.join(60)
    assert not any(t.is_alive() for t in writers + others), "a writer or reader hung"


def tree(store):
    return {k: read(os.path.join(store, k)) for k in sorted(os.listdir(store))}


def last_event_matches(watcher, key, exists):
    """The watcher's last CREATE or DELETE of KEY tells its final state, and
    a key that exists had an event since (MODIFY and CLOSE_WRITE may come
    after a DELETE, as on any filesystem: a file open here is written to or
    closed after its name went)."""
    names = [n for n in names_of(watcher.events(), f"p/s/{key}") if n & CHANGES]
    made_or_gone = [n for n in names if n & {"CREATE", "DELETE"}]
    if not made_or_gone:
        return not exists
    return ("CREATE" in made_or_gone[-1]) == exists


def test_stress_three_mounts(mount_factory, watchers):
    # The store is made before the three mounts start: this test is about
    # the events of key changes, not about how mounts catch up with a store
    # made while they run (the stream advisory check in core/nats-store.c).
    maker = mount_factory()
    os.makedirs(os.path.join(maker.path, "p", "s"))
    maker.unmount()
    mounts = [mount_factory() for _ in range(3)]
    stores = [os.path.join(m.path, "p", "s") for m in mounts]
    ws = [watchers.inotifywait(m.path) for m in mounts]

    run_all(stores, readers=False)

    def converged():
        try:
            return settled(*mounts) and tree(stores[0]) == tree(stores[1]) == tree(stores[2])
        except FileNotFoundError:  # listed, then deleted before it was read
            return False

    def differences():
        trees = [tree(s) for s in stores]
        return {k: [t.get(k) for t in trees] for k in KEYS if len({t.get(k) for t in trees}) > 1}

    wait_explained(converged, lambda: (differences(), [status(m) for m in mounts]),
                   timeout=30, what="the three mounts to show one tree")
    final = tree(stores[0])
    for n, w in enumerate(ws):
        def wrong(w=w):
            return {k: ("exists" if k in final else "deleted",
                        [sorted(e) for e in names_of(w.events(), f"p/s/{k}")
                         if e & CHANGES][-12:])
                    for k in KEYS if not last_event_matches(w, k, k in final)}
        wait_explained(lambda: not wrong(), wrong,
                       what=f"watcher {n} to see the final state of every key")
    for m in mounts:
        assert m.proc.poll() is None
        assert m.unexpected_stderr() == []


def test_a_reader_of_the_old_value_leaves_no_stale_page(pair, watchers):
    """A file open since before a remote change reads from its old value;
    what it reads must not reach a later reader through the page cache."""
    a, b, da, db = pair
    w = watchers.syscalls(b.path, [db])
    write(f"{da}/k", "old value")
    wait_until(lambda: shows(f"{db}/k", "old value"), what="the value")
    # The echo of the old value is done: the CLOSE_WRITE awaited below is
    # the new value's (under load the old one's could come after the watch
    # began, before the new value had arrived).
    wait_events(w, "p/s/k", ["CLOSE_WRITE"])
    wait_until(lambda: settled(b), what="no echo queued on B")
    closes = sum("CLOSE_WRITE" in names for names in names_of(w.events(), "p/s/k"))
    with open(f"{db}/k", "rb") as old:
        write(f"{da}/k", "new value")  # the same size
        wait_events(w, "p/s/k", ["CLOSE_WRITE"] * (closes + 1))
        os.pread(old.fileno(), 100, 0)
        assert read(f"{db}/k") == "new value"
        os.pread(old.fileno(), 100, 0)
        assert read(f"{db}/k") == "new value"


def test_watchers_readers_and_remote_changes_at_once(mount_factory, watchers):
    """No deadlock: the echo thread's syscalls, readers and writers on three
    mounts, and recursive watchers, all at once; every mount settles."""
    mounts = [mount_factory() for _ in range(3)]
    stores = [os.path.join(m.path, "p", "s") for m in mounts]
    os.makedirs(stores[0])
    for s in stores:
        wait_until(lambda s=s: os.path.isdir(s), what="the store in every mount")
    for m in mounts:
        watchers.inotifywait(m.path)
    run_all(stores, readers=True)
    wait_until(lambda: settled(*mounts), timeout=30, what="every mount to settle")
    for m in mounts:
        assert m.proc.poll() is None
        assert m.unexpected_stderr() == []
