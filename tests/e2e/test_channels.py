"""Channels as stream files (DESIGN §3, issue 6).

SCOPE/@NAME and SCOPE/@NAME:PATH are regular files that only grow: each
message received is one escaped line; each line written is one message.
Most tests run two mounts on one nats-server; the ones that need only one
mount (many processes on it) use the embedded backend.
"""
import json
import os
import re
import select
import subprocess
import threading

import pytest

from conftest import Backend
from natsfixtures import nats_key
from util import DEADLINE, read, run, wait_until, write

INTEROP = os.path.join(os.environ["SOURCE_ROOT"], "tests", "interop")
CHANNEL_JS = os.path.join(INTEROP, "channel.js")
MIB = 1024 * 1024


@pytest.fixture
def backend(request, tmp_path):
    """NATS, unless a test asks for the embedded backend."""
    if getattr(request, "param", "nats") == "embedded":
        data = tmp_path / "data"
        return Backend("embedded", ["--data", str(data)], data)
    return Backend("nats", ["--server", request.getfixturevalue("nats_server")])


embedded = pytest.mark.parametrize("backend", ["embedded"], indirect=True)


class Procs:
    """Processes a test starts on a mount; all ended before it unmounts."""

    def __init__(self):
        self.procs = []

    def start(self, args, **kwargs):
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **kwargs)
        self.procs.append(proc)
        return proc

    def stop_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
            proc.communicate(timeout=DEADLINE)


@pytest.fixture
def procs(mount_factory):
    p = Procs()
    yield p
    p.stop_all()


class Lines:
    """Collects the lines PROC prints, on a thread."""

    def __init__(self, proc):
        self.proc = proc
        self.lines = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.decode())

    def wait(self, count, what="lines"):
        wait_until(lambda: len(self.lines) >= count or self.proc.poll() is not None,
                   what=f"{count} {what} (have {len(self.lines)})")
        assert len(self.lines) >= count, self.proc.stderr.read().decode()
        return self.lines[:count]


def tail(procs, path, *options):
    """`tail OPTIONS PATH` from the start of the file, its output as Lines."""
    return Lines(procs.start(["tail", "-n", "+1", "-s", "0.1", *options, path]))


def subscribed(scope, file_name):
    """The mount lists a channel once it is subscribed to it (or saw traffic on it)."""
    return file_name in os.listdir(scope)


def channels(scope):
    """The channel files `ls SCOPE` shows, as bytes."""
    return {name for name in os.listdir(os.fsencode(scope)) if name.startswith(b"@")}


@pytest.fixture
def pair(mount_factory):
    """The scope p on two mounts of one nats-server."""
    a, b = mount_factory(), mount_factory()
    sa, sb = os.path.join(a.path, "p"), os.path.join(b.path, "p")
    os.mkdir(sa)
    wait_until(lambda: os.path.isdir(sb), what="the scope to show in the other mount")
    return sa, sb


@pytest.fixture
def scope(mount):
    path = os.path.join(mount.path, "p")
    os.mkdir(path)
    return path


def append(path, data):
    write(path, data, mode="a")


# ------------------------------------------------------------------ 1, 2

@pytest.mark.parametrize("follow", ["-f", "-F"])
def test_tail_on_another_mount_prints_every_line_in_order(pair, procs, follow):
    a, b = pair
    out = tail(procs, f"{b}/@chat", follow)
    wait_until(lambda: subscribed(b, "@chat"), what="mount B to subscribe")
    lines = [f"line {i} of {follow}\n" for i in range(1000)]
    script = f'for i in $(seq 0 999); do echo "line $i of {follow}" >> "$1"; done'
    subprocess.run(["bash", "-c", script, "bash", f"{a}/@chat"], check=True, timeout=60)
    assert out.wait(1000) == lines
    wait_until(lambda: read(f"{a}/@chat") == "".join(lines),  # the writer's mount too
               what="the writer's own lines")


def test_self_echo_and_no_history_for_late_subscribers(pair):
    a, b = pair
    append(f"{a}/@news", "first\n")
    wait_until(lambda: read(f"{a}/@news") == "first\n", what="the writer's own message")
    assert read(f"{b}/@news") == ""  # B subscribed just now: it missed "first"
    append(f"{a}/@news", "second\n")
    wait_until(lambda: read(f"{b}/@news") == "second\n", what="the message on B")
    # A's own copy comes back on its own: B may have had it first
    wait_until(lambda: read(f"{a}/@news") == "first\nsecond\n", what="the second on A")
    assert os.stat(f"{a}/@news").st_size == len("first\nsecond\n")


# --------------------------------------------------------------------- 3

@embedded
def test_shell_tools_end_and_see_every_message(scope):
    chat = f"{scope}/@log"
    with open(chat, "w") as f:  # one open file, 100 lines: 100 messages
        f.write("".join(f"message {i}\n" for i in range(100)))
    wait_until(lambda: os.stat(chat).st_size == sum(len(f"message {i}\n") for i in range(100)),
               what="every message")
    assert run(f"cat '{chat}'").stdout.splitlines() == [f"message {i}" for i in range(100)]
    assert run(f"grep -x 'message 42' '{chat}'").stdout == "message 42\n"
    assert run(f"head -n 3 '{chat}'").stdout == "message 0\nmessage 1\nmessage 2\n"
    assert run(f"wc -l < '{chat}'").stdout.strip() == "100"
    assert run(f"tail -n 2 '{chat}'").stdout == "message 98\nmessage 99\n"


@embedded
def test_partial_lines_wait_for_newline_or_close(scope):
    chat = f"{scope}/@partial"
    with open(chat, "a", buffering=1) as f:
        f.write("no newline yet")
        f.flush()
        f.write(" ... done\nand a tail")
        wait_until(lambda: read(chat) == "no newline yet ... done\n", what="the whole line")
    wait_until(lambda: read(chat) == "no newline yet ... done\nand a tail\n",
               what="the partial line at close")
    run(f"printf 'a\\n\\nb' >> '{chat}'")  # an empty line is an empty message
    wait_until(lambda: read(chat).endswith("and a tail\na\n\nb\n"), what="three messages")


@embedded
def test_file_only_grows_and_names_stay_apart(scope):
    chat = f"{scope}/@chat"
    run(f"touch '{chat}'")
    st = os.stat(chat)
    assert (st.st_size, oct(st.st_mode)) == (0, oct(0o100644))
    assert os.stat(chat).st_mtime_ns == st.st_mtime_ns  # no message, no change
    run(f"echo one > '{chat}'")  # > appends too: the file only grows
    wait_until(lambda: os.stat(chat).st_size == 4, what="the message")
    assert os.stat(chat).st_mtime_ns != st.st_mtime_ns
    os.truncate(chat, 0)  # ignored
    assert os.stat(chat).st_size == 4
    with pytest.raises(FileExistsError):
        os.open(chat, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    with pytest.raises(PermissionError):
        os.unlink(chat)
    with pytest.raises(PermissionError):
        os.rename(chat, f"{scope}/@other")
    os.mkdir(f"{scope}/%40chat")  # the store "@chat" is another name
    # Every channel name looked up is subscribed to (rename looked up @other).
    assert sorted(os.listdir(scope)) == ["%40chat", "@chat", "@other"]
    assert os.path.isdir(f"{scope}/%40chat") and os.path.isfile(chat)
    with pytest.raises(OSError) as e:
        os.stat(f"{scope}/@bad%zz")
    assert e.value.errno == 22  # EINVAL: not a name the encoding makes
    fd = os.open(chat, os.O_WRONLY | os.O_APPEND)
    try:
        data = b"x" * (MIB + 1) + b"\n"  # over the backend's 1 MiB message limit
        with pytest.raises(OSError) as e:
            while data:
                data = data[os.write(fd, data):]
        assert e.value.errno == 27  # EFBIG, and the line is dropped
    finally:
        os.close(fd)
    run(f"echo two >> '{chat}'")
    wait_until(lambda: read(chat) == "one\ntwo\n", what="the next message")


# --------------------------------------------------------------------- 4

@embedded
def test_path_scoped_channels_do_not_cross(scope):
    a, b = f"{scope}/@cursors:doc%2Fa.tex", f"{scope}/@cursors:doc%2Fb.tex"
    plain = f"{scope}/@cursors"
    for path in (a, b, plain):
        run(f"touch '{path}'")
    append(a, '{"line":1}\n')
    wait_until(lambda: read(a) == '{"line":1}\n', what="a.tex's cursor")
    append(b, '{"line":2}\n')
    wait_until(lambda: read(b) == '{"line":2}\n', what="b.tex's cursor")
    append(a, '{"line":3}\n')  # delivered after b.tex's: a crossing would show first
    wait_until(lambda: read(a) == '{"line":1}\n{"line":3}\n', what="a.tex's second cursor")
    assert read(b) == '{"line":2}\n'
    assert read(plain) == ""
    assert sorted(os.listdir(scope)) == ["@cursors", "@cursors:doc%2Fa.tex",
                                         "@cursors:doc%2Fb.tex"]


# --------------------------------------------------------------------- 5

LINE = re.compile(rb"(\d{6}) x{992}\n")


def numbered(i):
    return b"%06d %s\n" % (i, b"x" * 992)  # 1,000 bytes


def check_whole_lines(data):
    """The numbers of DATA's lines, which must all be whole and consecutive."""
    assert data.endswith(b"\n")
    numbers = [int(line[:6]) for line in data.splitlines(keepends=True)
               if LINE.fullmatch(line) or pytest.fail(f"a torn line: {line[:40]!r}...")]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    return numbers


@embedded
def test_window_keeps_offsets_growing_and_lines_whole(mount_factory, procs):
    m = mount_factory(options=["channel_window=1M"])
    os.mkdir(f"{m.path}/p")
    big = f"{m.path}/p/@big"
    out = tail(procs, big, "-f")
    wait_until(lambda: subscribed(f"{m.path}/p", "@big"), what="the channel")
    total, sizes, chunk = 10 * 1024, [], 512  # 10 MiB in chunks of 512 lines
    fd = os.open(big, os.O_WRONLY | os.O_APPEND)
    try:
        for first in range(0, total, chunk):
            data = b"".join(numbered(i) for i in range(first, first + chunk))
            while data:
                data = data[os.write(fd, data):]
            out.wait(first + chunk)  # tail keeps following
            sizes.append(os.stat(big).st_size)
    finally:
        os.close(fd)
    assert sizes == sorted(set(sizes)) and sizes[-1] == total * 1000
    assert [line.encode() for line in out.wait(total)] == [numbered(i) for i in range(total)]

    with open(big, "rb") as f:  # from offset 0: the window's lines, whole
        numbers = check_whole_lines(f.read())
    assert numbers[-1] == total - 1 and 0 < numbers[0] and len(numbers) <= 1049
    with open(big, "rb") as f:  # from the middle of what left the window
        f.seek(5 * MIB + 17)
        assert check_whole_lines(f.read())[-1] == total - 1

    fd = os.open(big, os.O_RDONLY)
    try:
        start = os.read(fd, 10)  # the window's first line, in part
        write(big, b"".join(numbered(i) for i in range(total, total + 1500)), mode="ab")
        wait_until(lambda: os.stat(big).st_size == (total + 1500) * 1000, what="1.5 MiB more")
        rest = os.read(fd, 4096)  # that line left the window, yet its rest is there
        assert LINE.fullmatch(start + rest) and int(start[:6]) == numbers[0]
        after = b"".join(iter(lambda: os.read(fd, 65536), b""))
        assert check_whole_lines(after)[-1] == total + 1499
    finally:
        os.close(fd)


# --------------------------------------------------------------------- 6

def node_channel(*args, **kwargs):
    return ["node", CHANNEL_JS, *args]


def test_nodejs_client_interoperates(mount_factory, procs, nats_server):
    m = mount_factory()
    scope = f"{m.path}/p"
    os.mkdir(scope)
    out = tail(procs, f"{scope}/@chat", "-f")
    wait_until(lambda: subscribed(scope, "@chat"), what="the channel")

    def publish(subject, message):
        subprocess.run(node_channel(nats_server, "pub", subject), input=message, check=True,
                       capture_output=True, timeout=30)

    publish("conat.p.pubsub.chat", b'{"from":"node"}')
    publish("conat.p.pubsub.chat", b"two\nlines and a \\ backslash")
    assert out.wait(2) == ['{"from":"node"}\n', "two\\nlines and a \\\\ backslash\n"]

    sub = Lines(procs.start(node_channel(nats_server, "sub", "conat.p.pubsub.>", "2")))
    assert sub.wait(1, "ready") == ["ready\n"]
    append(f"{scope}/@chat", '{"from":"file"}\n')
    append(f"{scope}/@cursors:doc%2Fa.tex", "at 3\n")
    got = [json.loads(line) for line in sub.wait(3)[1:]]
    assert got == [{"subject": "conat.p.pubsub.chat", "data": '{"from":"file"}'},
                   {"subject": "conat.p.pubsub.cursors.doc/a=2Etex", "data": "at 3"}]
    assert out.wait(3)[2] == '{"from":"file"}\n'


def test_lines_of_one_write_arrive_as_as_many_messages_in_order(pair, procs, nats_server):
    """A write() of many lines goes out as a batch; single lines and batches,
    mixed, reach tail -f on another mount, a Node.js subscriber and the
    writer's own mount as one message per line, in order."""
    a, b = pair
    writes = [[f"single {w}"] if w % 2 == 0 else [f"write {w} line {i}" for i in range(300)]
              for w in range(6)]
    lines = [line for w in writes for line in w]
    out = tail(procs, f"{b}/@batch", "-f")
    wait_until(lambda: subscribed(b, "@batch"), what="mount B to subscribe")
    sub = Lines(procs.start(node_channel(nats_server, "sub", "conat.p.pubsub.batch",
                                         str(len(lines)))))
    assert sub.wait(1, "ready") == ["ready\n"]
    fd = os.open(f"{a}/@batch", os.O_WRONLY | os.O_APPEND)
    try:
        for w in writes:
            data = "".join(line + "\n" for line in w).encode()
            assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)
    assert out.wait(len(lines)) == [line + "\n" for line in lines]
    assert [json.loads(m)["data"] for m in sub.wait(len(lines) + 1)[1:]] == lines
    wait_until(lambda: read(f"{a}/@batch").count("\n") >= len(lines), what="the self-echo")
    assert read(f"{a}/@batch") == "".join(line + "\n" for line in lines)


# --------------------------------------------------------------------- 7

def test_poll_wakes_when_another_mount_sends(pair):
    a, b = pair
    fd = os.open(f"{b}/@ping", os.O_RDONLY)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        assert poller.poll(0) == []  # nothing new since open
        result, tid = [], []

        def wait():
            tid.append(threading.get_native_id())
            result.extend(poller.poll(DEADLINE * 1000))

        waiter = threading.Thread(target=wait)
        waiter.start()
        # Send once the waiter sleeps in poll(), its FUSE poll answered.
        wait_until(lambda: tid and read(f"/proc/self/task/{tid[0]}/wchan").startswith(
            "poll_schedule_timeout"),
                   what="the waiter to sleep in poll()")
        append(f"{a}/@ping", "ping\n")
        waiter.join(DEADLINE + 5)
        assert result == [(fd, select.POLLIN)]
        assert os.read(fd, 4096) == b"ping\n"
        assert os.read(fd, 4096) == b""
        assert poller.poll(0) == []  # read to the end: nothing new
    finally:
        os.close(fd)


# ------------------------------------------ ls shows traffic; channel xattrs

def nats_token(name: bytes) -> str:
    """T() of docs/nats-mapping.md: a name as one subject token."""
    return nats_key(name).replace(".", "=2E")


def test_ls_shows_channels_with_traffic_from_another_mount(pair):
    a, b = pair
    assert os.listdir(b) == []  # B looked the scope up (the fixture): it watches its traffic
    append(f"{a}/@news", "first\n")
    append(f"{a}/@cursors:doc%2Fa.tex", "at 3\n")
    wait_until(lambda: channels(b) == {b"@news", b"@cursors:doc%2Fa.tex"},
               what="the channels A sent on to show on B")
    os.mkdir(f"{b}/%40news")  # the store "@news" is another name
    assert sorted(os.listdir(b)) == ["%40news", "@cursors:doc%2Fa.tex", "@news"]
    assert os.path.isdir(f"{b}/%40news")
    assert os.stat(f"{b}/@news").st_size == 0  # subscribed now: "first" was before
    append(f"{a}/@news", "second\n")
    wait_until(lambda: read(f"{b}/@news") == "second\n", what="the next message on B")


@pytest.mark.parametrize("backend", ["embedded", "nats"], indirect=True)
def test_getfattr_shows_channel_name_and_path(scope):
    run(f"touch '{scope}/@chat' '{scope}/@cursors:doc%2Fa.tex' '{scope}/@a%3Ab%25c:x:y'")
    out = run(f"cd '{scope}' && getfattr -d @cursors:doc%2Fa.tex").stdout
    assert out == ('# file: @cursors:doc%2Fa.tex\nuser.conat.name="cursors"\n'
                   'user.conat.path="doc/a.tex"\n\n')
    out = run(f"cd '{scope}' && getfattr -d @chat").stdout
    assert out == '# file: @chat\nuser.conat.name="chat"\n\n'  # no path: no user.conat.path
    assert os.getxattr(f"{scope}/@a%3Ab%25c:x:y", "user.conat.name") == b"a:b%c"
    assert os.getxattr(f"{scope}/@a%3Ab%25c:x:y", "user.conat.path") == b"x:y"
    with pytest.raises(OSError) as e:
        os.setxattr(f"{scope}/@chat", "user.conat.name", b"other")
    assert e.value.errno == 95  # ENOTSUP


def node_publish(url, *subjects, message=b"x"):
    subprocess.run(node_channel(url, "pub", *subjects), input=message, check=True,
                   capture_output=True, timeout=60)


def test_ls_shows_channels_a_nodejs_client_sends_on(mount_factory, nats_server):
    m = mount_factory()
    scope = f"{m.path}/p"
    os.mkdir(scope)  # looked up: the mount watches the scope's traffic
    odd = bytes(c for c in range(1, 128) if c not in b"/%:.") + "é".encode() + b".\xff"
    odd_path = b"a b\nc.d"
    odd_file = b"@" + odd + b":" + odd_path  # nothing of it is escaped in a file name
    odd_subject = f"conat.p.pubsub.{nats_token(odd)}.{nats_token(odd_path)}"
    node_publish(nats_server,
                 "conat.p.pubsub.from-node",
                 "conat.p.pubsub.cursors.src/a=2Ec",
                 odd_subject,
                 # not channels: passed over
                 "conat.p.pubsub.a.b.c", "conat.p.pubsub.=41", "conat.p.pubsub.=00",
                 "conat.p.pubsub.bad=zz", "conat.p.pubsub.x.=2", "conat.p.pubsub",
                 "conat.p.pubsub." + "n" * 2990,  # a subject too long for conatfs
                 "conat.p.pubsub." + "m" * 300,   # a file name too long
                 "conat.q.pubsub.other-scope",
                 "conat.p.pubsub.last")
    wait_until(lambda: b"@last" in channels(scope), what="the last channel to show")
    assert channels(scope) == {b"@from-node", b"@cursors:src%2Fa.c",
                               odd_file, b"@last"}
    path = os.fsencode(scope) + b"/" + odd_file
    assert os.getxattr(path, "user.conat.name") == odd
    assert os.getxattr(path, "user.conat.path") == odd_path
    assert os.stat(path).st_size == 0  # subscribed by that lookup
    node_publish(nats_server, odd_subject, message=b"hello")
    wait_until(lambda: read(path, "rb") == b"hello\n", what="the message in the file")


def test_ls_remembers_a_bounded_number_of_channels(mount_factory, nats_server):
    m = mount_factory()
    scope = f"{m.path}/p"
    os.mkdir(scope)
    node_publish(nats_server, *(f"conat.p.pubsub.ch{i:04d}" for i in range(1100)))

    def last_shows():
        node_publish(nats_server, "conat.p.pubsub.last")
        return b"@last" in channels(scope)
    wait_until(last_shows, what="the newest channel to show")
    seen = channels(scope)
    assert len(seen) <= 1024 and b"@ch0000" not in seen  # the oldest is forgotten
