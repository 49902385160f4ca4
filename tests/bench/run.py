#!/usr/bin/python3
"""Run the conatfs benchmarks and print one table.

    /usr/bin/python3 tests/bench/run.py [--build build] [--repeats 7] [--quick]
                                        [--only files,nats,events,big,stores,core]

Each figure is the median over repeats, next to its anchor measured in the
same run (tmpfs for file operations, and nullfs, the cheapest possible FUSE
daemon, for the floor of the kernel round trips; raw libnats on the same
nats-server for the NATS backend: pipelined puts, kvWatcher, core
pub/sub), so the ratios hold on a shared, noisy machine.  Starts its own
mounts (as root: a tmpfs too) and its own nats-servers (free loopback
ports, temporary directories), and leaves nothing behind.  --quick: 3
repeats of smaller runs; --only: some groups of figures.  Takes a few
minutes.
"""
import argparse
import collections
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# One line of the table.  UNIT says how OURS and ANCHOR read: "ns" (shown in
# µs or ms), "/s", "B", "MiB", "n"; ANCHOR None: no anchor.  MET: whether the
# target is met, None for info and floor rows.
Row = collections.namedtuple("Row", "name ours anchor anchor_name unit target met")

Q = False  # --quick: smaller runs, for iterating


def wait_for(cond, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {what}")


@contextlib.contextmanager
def tmpfs(path):
    os.makedirs(path)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", path], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", path], check=True)


def unmount(mnt, proc):
    """fusermount3 -u, retried while it is EBUSY (an echo running); else SIGTERM."""
    for _ in range(20):
        if not os.path.ismount(mnt) or proc.poll() is not None:
            break
        if subprocess.run(["fusermount3", "-u", mnt], stderr=subprocess.DEVNULL).returncode == 0:
            return
        time.sleep(0.2)
    if proc.poll() is None:
        proc.terminate()


@contextlib.contextmanager
def conatfs_daemon(build, mnt, data, extra=(), wait=True):
    """Yields the daemon's Popen.  DATA: the embedded backend's directory, or
    None (EXTRA names a server).  WAIT: until the mount is there."""
    os.makedirs(mnt)
    log = open(os.path.join(os.path.dirname(mnt), os.path.basename(mnt) + ".log"), "w")
    backend = ["--data", data] if data is not None else []
    proc = subprocess.Popen([os.path.join(build, "fs", "conatfs"), "-f", *backend,
                             *extra, mnt], stderr=log)
    try:
        if wait:
            wait_for(lambda: os.path.ismount(mnt) or proc.poll() is not None, "mount")
            if proc.poll() is not None:
                raise RuntimeError("conatfs exited at start")
        yield proc
    finally:
        unmount(mnt, proc)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            subprocess.run(["fusermount3", "-uz", mnt])
            proc.kill()
            proc.wait()
        log.close()


@contextlib.contextmanager
def conatfs_mount(build, mnt, data, extra=()):
    with conatfs_daemon(build, mnt, data, extra):
        yield mnt


@contextlib.contextmanager
def nullfs_mount(build, mnt, no_open=False):
    """The cheapest FUSE filesystem: the floor any FUSE daemon pays here."""
    os.makedirs(mnt)
    args = [os.path.join(build, "tests", "bench", "nullfs")] + (["--no-open"] if no_open else [])
    proc = subprocess.Popen(args + [mnt])
    try:
        wait_for(lambda: os.path.ismount(mnt) or proc.poll() is not None, "nullfs mount")
        yield os.path.join(mnt, "f")
    finally:
        unmount(mnt, proc)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            subprocess.run(["fusermount3", "-uz", mnt])
            proc.kill()
            proc.wait()


def fileops(build, op, path, n):
    out = subprocess.run([os.path.join(build, "tests", "bench", "fileops"), op, path, str(n)],
                         check=True, capture_output=True, text=True).stdout
    return float(out)


def median_of(repeats, fn):
    return statistics.median(fn() for _ in range(repeats))


def bench_files(build, tmp, repeats):
    n_read, n_write = (5000, 1000) if Q else (20000, 5000)
    with tmpfs(os.path.join(tmp, "tmpfs")) as t, \
            conatfs_mount(build, os.path.join(tmp, "mnt"), os.path.join(tmp, "data")) as m:
        os.makedirs(os.path.join(m, "bench", "store"))
        os.makedirs(os.path.join(t, "bench", "store"))
        value = b"x" * 99 + b"\n"
        for root in (t, m):
            with open(os.path.join(root, "bench", "store", "key100"), "wb") as f:
                f.write(value)
        key_t = os.path.join(t, "bench", "store", "key100")
        key_m = os.path.join(m, "bench", "store", "key100")
        w_t = os.path.join(t, "bench", "store", "w")
        w_m = os.path.join(m, "bench", "store", "w")
        r_t = median_of(repeats, lambda: fileops(build, "read", key_t, n_read))
        r_m = median_of(repeats, lambda: fileops(build, "read", key_m, n_read))
        w_t_ns = median_of(repeats, lambda: fileops(build, "write", w_t, n_write))
        w_m_ns = median_of(repeats, lambda: fileops(build, "write", w_m, n_write))
    with nullfs_mount(build, os.path.join(tmp, "null")) as f:
        n_r = median_of(repeats, lambda: fileops(build, "read", f, n_read))
        n_w = median_of(repeats, lambda: fileops(build, "write", f, n_write))
    with nullfs_mount(build, os.path.join(tmp, "null-noopen"), no_open=True) as f:
        o_r = median_of(repeats, lambda: fileops(build, "read", f, n_read))
    read = "open+read+close of an unchanged 100 B key"
    write = "`echo v > key` (open+write+close)"
    return [
        Row(read, r_m, r_t, "tmpfs", "ns", "≤ 1.3x", r_m / r_t <= 1.3),
        Row(write, w_m_ns, w_t_ns, "tmpfs", "ns", "≤ 3x", w_m_ns / w_t_ns <= 3),
        Row(read, r_m, n_r, "nullfs", "ns", "floor", None),
        Row(write, w_m_ns, n_w, "nullfs", "ns", "floor", None),
        Row("open+read+close, nullfs without OPEN (FLUSH per close)", o_r, r_t, "tmpfs", "ns",
            "info", None),
    ]


@contextlib.contextmanager
def nats_server(tmp):
    """nats-server -js on a free loopback port, its store in TMP; stopped by pid."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(os.path.join(tmp, "nats.log"), "w")
    proc = subprocess.Popen(["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port),
                             "-sd", os.path.join(tmp, "nats")], stdout=log,
                            stderr=subprocess.STDOUT)

    def listening():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return proc.poll() is not None

    try:
        wait_for(listening, "nats-server")
        if proc.poll() is not None:
            raise RuntimeError("nats-server exited at start")
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def tool(build, name, *args):
    """Runs tests/bench/NAME; returns the numbers it prints."""
    out = subprocess.run([os.path.join(build, "tests", "bench", name), *map(str, args)],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    nums = [float(x) for x in out.split()]
    return nums[0] if len(nums) == 1 else nums


NATS_WRITERS = 4      # threads writing them through the mount


def confirmed_sets(build, mount, store, n):
    """Sets/s through MOUNT: NATS_WRITERS threads write N new files into a
    fresh STORE, timed until .conatfs/status shows nothing pending."""
    d = os.path.join(mount, "bench", store)
    os.makedirs(d)
    return tool(build, "nats-files", "confirmed", d, n, NATS_WRITERS,
                os.path.join(mount, ".conatfs", "status"))


def bench_nats(build, tmp, repeats):
    """Sets and confirmations; runs of conatfs and its anchor alternate."""
    n_sets, n_sync = (5000, 500) if Q else (20000, 2000)
    sets, raw_sets, emb_sets, fsyncs, emb_fsyncs, raw_puts = [], [], [], [], [], []
    with nats_server(tmp) as url, \
            conatfs_mount(build, os.path.join(tmp, "mnt-nats"), None,
                          extra=["--server", url]) as m, \
            conatfs_mount(build, os.path.join(tmp, "mnt-emb"), os.path.join(tmp, "data-emb")) as e:
        for root in (m, e):
            os.makedirs(os.path.join(root, "bench", "latency"))
        key = os.path.join(m, "bench", "latency", "k")
        emb_key = os.path.join(e, "bench", "latency", "k")
        for r in range(repeats):
            raw_sets.append(tool(build, "raw-nats", url, "pipelined", n_sets))
            sets.append(confirmed_sets(build, m, f"sets-{r}", n_sets))
            emb_sets.append(confirmed_sets(build, e, f"sets-{r}", n_sets))
            raw_puts.append(tool(build, "raw-nats", url, "sync", n_sync))
            fsyncs.append(tool(build, "nats-files", "fsync", key, n_sync))
            emb_fsyncs.append(tool(build, "nats-files", "fsync", emb_key, n_sync))
    med = statistics.median
    pipelined, put = "raw libnats pipelined puts", "raw kvStore_Put"
    return [
        Row(f"confirmed sets/s through the mount, {NATS_WRITERS} writers ({n_sets} new 100 B "
            "files, until status shows 0 pending)", med(sets), med(raw_sets), pipelined, "/s",
            "≥ 60%", med(sets) / med(raw_sets) >= 0.6),
        Row("close to confirmation: open+write 100 B+fsync+close", med(fsyncs), med(raw_puts),
            put, "ns", "≤ 1.5x", med(fsyncs) / med(raw_puts) <= 1.5),
        Row("the same sets/s on an embedded mount (the FUSE path alone)", med(emb_sets),
            med(raw_sets), pipelined, "/s", "info", None),
        Row("the same open+write+fsync+close on an embedded mount (no network)",
            med(emb_fsyncs), med(raw_puts), put, "ns", "info", None),
    ]


def bench_events(build, tmp, repeats):
    """Changes on mount A seen on mount B, both on one nats-server."""
    # As many messages through the mounts as through raw NATS: a short run
    # would mostly measure its start and end.
    n_lat, n_msgs = (200, 100000) if Q else (1000, 200000)
    notify, raw_watch, rate, rate1, raw_rate, wake, raw_wake = [], [], [], [], [], [], []
    server = os.path.join(tmp, "events")
    os.makedirs(server)
    with nats_server(server) as url, \
            conatfs_mount(build, os.path.join(tmp, "ev-a"), None, extra=["--server", url]) as a, \
            conatfs_mount(build, os.path.join(tmp, "ev-b"), None, extra=["--server", url]) as b:
        os.makedirs(os.path.join(a, "bench", "ev"))
        with open(os.path.join(a, "bench", "ev", "k"), "w") as f:
            f.write("v\n")
        wait_for(lambda: os.path.exists(os.path.join(b, "bench", "ev", "k")), "the key on B")
        chans = {}
        for c in ("rate", "poll"):
            for root in (a, b):  # subscribe both mounts
                open(os.path.join(root, "bench", "@" + c), "a").close()
            chans[c] = [os.path.join(root, "bench", "@" + c) for root in (a, b)]
        for _ in range(repeats):
            raw_watch.append(tool(build, "raw-nats-events", url, "watch", n_lat))
            notify.append(tool(build, "mount-events", "inotify", os.path.join(a, "bench", "ev", "k"),
                               os.path.join(b, "bench", "ev"), n_lat))
            raw_rate.append(tool(build, "raw-nats-events", url, "rate", n_msgs))
            rate.append(tool(build, "mount-events", "rate", *chans["rate"], n_msgs, 40))
            rate1.append(tool(build, "mount-events", "rate", *chans["rate"], n_msgs // 40, 1))
            raw_wake.append(tool(build, "raw-nats-events", url, "latency", n_lat))
            wake.append(tool(build, "mount-events", "poll", *chans["poll"], n_lat))
    med = statistics.median
    lost = sum(x[1] for x in rate + rate1)
    rate, rate1 = [x[0] for x in rate], [x[0] for x in rate1]
    p50, p99 = med(x[0] for x in notify), med(x[1] for x in notify)
    raw50, raw99 = med(x[0] for x in raw_watch), med(x[1] for x in raw_watch)
    w50, raw_w50 = med(x[0] for x in wake), med(x[0] for x in raw_wake)
    return [
        Row("close() on mount A → inotify event on mount B, p50", p50, raw50,
            "raw kvStore_Put → kvWatcher", "ns", "≤ 2x", p50 / raw50 <= 2),
        Row("close() on mount A → inotify event on mount B, p99", p99, raw99,
            "raw kvStore_Put → kvWatcher", "ns", "≤ 2 ms", p99 <= 2e6),
        Row("channel messages/s, writer on mount A → reader on mount B (100 B lines, "
            "4 KiB writes as stdio makes)", med(rate), med(raw_rate), "raw core NATS pub → sub",
            "/s", "≥ 25%", med(rate) / med(raw_rate) >= 0.25),
        Row("the same, one write() per line", med(rate1), med(raw_rate),
            "raw core NATS pub → sub", "/s", "info", None),
        Row(f"lines the reader missed in those runs, of {repeats * (n_msgs + n_msgs // 40):,} "
            "(it fell more than the 1 MiB window behind)", lost, None, None, "", "info", None),
        Row("write() on A → poll() wake on B of a channel file, p50", w50, raw_w50,
            "raw publish+flush → sub", "ns", "≤ 2x", w50 / raw_w50 <= 2),
    ]


def proc_status(pid, field):
    """A number of /proc/PID/status (VmRSS in bytes)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                n = int(line.split()[1])
                return n * 1024 if line.rstrip().endswith("kB") else n
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


BIG_KEYS = 100000
VALUE_BYTES = 100


def big_store_once(build, tmp, url, r):
    """One fresh mount of the 100,000-key store: (ready ns, ls -f ns, RSS
    growth in bytes).  Ready: from the daemon's start until a stat of one
    key returns (the lookup opens the store, which waits until it is loaded)."""
    mnt = os.path.join(tmp, f"big-{r}")
    key = os.path.join(mnt, "bench", "big", "key-000000")
    rss0 = None
    t0 = time.monotonic_ns()
    with conatfs_daemon(build, mnt, None, extra=["--server", url], wait=False) as proc:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("conatfs exited at start")
            if rss0 is None and os.path.ismount(mnt):
                rss0 = proc_status(proc.pid, "VmRSS")
            if rss0 is not None:
                try:
                    os.stat(key)
                    break
                except FileNotFoundError:
                    pass
            time.sleep(0.002)
        ready = time.monotonic_ns() - t0
        t1 = time.monotonic_ns()
        out = subprocess.run(["ls", "-f", os.path.dirname(key)], check=True,
                             capture_output=True).stdout
        ls = time.monotonic_ns() - t1
        names = out.count(b"\n")
        if names != BIG_KEYS + 2:
            raise RuntimeError(f"ls -f listed {names} names")
        rss1 = proc_status(proc.pid, "VmRSS")
    return ready, ls, rss1 - rss0


def bench_big(build, tmp, repeats):
    """A store of 100,000 keys, loaded by fresh mounts and by raw libnats."""
    runs = max(1, min(repeats, 3 if Q else 5))
    ready, ls, growth, raw = [], [], [], []
    server = os.path.join(tmp, "big")
    os.makedirs(server)
    with nats_server(server) as url:
        tool(build, "raw-nats-load", url, "fill", "conat_bench-big", BIG_KEYS)
        for r in range(runs):
            raw.append(tool(build, "raw-nats-load", url, "load", "conat_bench-big"))
            t_ready, t_ls, g = big_store_once(build, tmp, url, r)
            ready.append(t_ready)
            ls.append(t_ls)
            growth.append(g)
    med = statistics.median
    per_key = med(growth) / BIG_KEYS - VALUE_BYTES
    what = f"store of {BIG_KEYS:,} keys (NATS)"
    return [
        Row(f"{what}: mount ready (daemon start → a key's stat returns, store loaded)",
            med(ready), med(raw), "raw kvWatcher load (connect → end marker)", "ns", "≤ 2x",
            med(ready) / med(raw) <= 2),
        Row(f"{what}: `ls -f` of the store, first after mount", med(ls), None, None, "ns",
            "≤ 0.5 s", med(ls) <= 0.5e9),
        Row(f"{what}: daemon RSS growth per key beyond its {VALUE_BYTES} B value "
            "(load + ls)", per_key, None, None, "B", "≤ 300 B", per_key <= 300),
    ]


STORES = 1000


def bench_stores(build, tmp, repeats):
    """1,000 stores opened (a key read in each) in one mount."""
    server = os.path.join(tmp, "stores")
    os.makedirs(server)
    with nats_server(server) as url:
        tool(build, "raw-nats-load", url, "buckets", "conat_bench-s", STORES)
        with conatfs_daemon(build, os.path.join(tmp, "stores-mnt"), None,
                            extra=["--server", url]) as proc:
            mnt = os.path.join(tmp, "stores-mnt")
            with open(os.path.join(mnt, ".conatfs", "status")) as f:
                f.read()
            threads0 = proc_status(proc.pid, "Threads")
            rss0 = proc_status(proc.pid, "VmRSS")
            t0 = time.monotonic_ns()
            for i in range(STORES):
                with open(os.path.join(mnt, "bench", f"s{i:04d}", "k"), "rb") as f:
                    f.read()
            took = time.monotonic_ns() - t0
            with open(os.path.join(mnt, ".conatfs", "status")) as f:
                still_open = json.load(f)["stores_open"]
            if still_open < STORES:
                raise RuntimeError(f"only {still_open} stores open")
            threads = proc_status(proc.pid, "Threads")
            rss = proc_status(proc.pid, "VmRSS")
    what = f"{STORES:,} stores open in one mount (NATS; a key read in each)"
    return [
        Row(f"{what}: threads", threads, threads0, "before, no store open", "n", "≤ 64",
            threads <= 64),
        Row(f"{what}: daemon RSS", rss / 2**20, rss0 / 2**20, "before, no store open", "MiB",
            "≤ 200 MiB", rss <= 200 * 2**20),
        Row(f"{what}: time to open them all, one after the other", took, None, None, "ns",
            "info", None),
    ]


def bench_core(build, repeats):
    """The libconat rows of bench-core."""
    out = subprocess.run([os.path.join(build, "tests", "bench", "bench-core"), str(repeats)],
                         check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1].isdigit():
            limit = float(cells[2].lstrip(">= "))
            rows.append(Row("libconat (embedded): " + cells[0], float(cells[1]), None, None,
                            "/s", "≥ " + cells[2].lstrip(">= "), float(cells[1]) >= limit))
    return rows


def show(value, unit):
    if unit == "ns":
        if value >= 1e9:
            return f"{value / 1e9:.2f} s"
        if value >= 1e6:
            return f"{value / 1e6:.2f} ms"
        return f"{value / 1e3:.1f} µs"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    if unit == "B":
        return f"{value:.0f} B"
    return f"{value:.0f}"


def print_table(rows, repeats):
    print(f"conatfs benchmark: {os.cpu_count()} cores, {os.uname().release}, "
          f"medians of {repeats}")
    print()
    print("| figure | conatfs | anchor (same run) | ratio | target | met |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r.anchor is None:
            anchor, ratio = "—", "—"
        else:
            anchor = f"{show(r.anchor, r.unit)} ({r.anchor_name})"
            ratio = f"{r.ours / r.anchor:.2f}x" if r.unit in ("ns", "/s") else "—"
        met = "—" if r.met is None else ("yes" if r.met else "**no**")
        print(f"| {r.name} | {show(r.ours, r.unit)} | {anchor} | {ratio} | {r.target} | {met} |")


GROUPS = ("files", "nats", "events", "big", "stores", "core")


def main():
    global Q
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(SOURCE_ROOT, "build"))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="3 repeats of smaller runs")
    ap.add_argument("--only", default=",".join(GROUPS),
                    help="comma-separated figure groups: " + ",".join(GROUPS))
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    groups = args.only.split(",")
    if any(g not in GROUPS for g in groups):
        ap.error(f"--only takes {','.join(GROUPS)}")
    Q = args.quick
    repeats = 3 if Q else args.repeats

    rows = []
    tmp = tempfile.mkdtemp(prefix="conatfs-bench-")
    try:
        if "files" in groups:
            rows += bench_files(build, tmp, repeats)
        if "nats" in groups:
            rows += bench_nats(build, tmp, repeats)
        if "events" in groups:
            rows += bench_events(build, tmp, repeats)
        if "big" in groups:
            rows += bench_big(build, tmp, repeats)
        if "stores" in groups:
            rows += bench_stores(build, tmp, repeats)
        if "core" in groups:
            rows += bench_core(build, repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(rows, repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
