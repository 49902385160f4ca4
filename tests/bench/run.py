#!/usr/bin/python3
"""Run the conatfs benchmarks and print one table.

    /usr/bin/python3 tests/bench/run.py [--build build] [--repeats 7]

Each figure is the median over repeats, next to its anchor measured in the
same run (tmpfs for file operations, and nullfs, the cheapest possible FUSE
daemon, for the floor of the kernel round trips; raw libnats on the same
nats-server for the NATS backend), so the ratios hold on a shared, noisy
machine.  Starts its own mounts (as root: a tmpfs too) and its own
nats-server (a free loopback port, a temporary directory), and leaves
nothing behind.
"""
import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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


@contextlib.contextmanager
def conatfs_mount(build, mnt, data, extra=()):
    """DATA: the embedded backend's directory, or None (EXTRA names a server)."""
    os.makedirs(mnt)
    log = open(os.path.join(os.path.dirname(mnt), os.path.basename(mnt) + ".log"), "w")
    backend = ["--data", data] if data is not None else []
    proc = subprocess.Popen([os.path.join(build, "fs", "conatfs"), "-f", *backend,
                             *extra, mnt], stderr=log)
    try:
        wait_for(lambda: os.path.ismount(mnt) or proc.poll() is not None, "mount")
        if proc.poll() is not None:
            raise RuntimeError("conatfs exited at start")
        yield mnt
    finally:
        subprocess.run(["fusermount3", "-u", mnt])
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            subprocess.run(["fusermount3", "-uz", mnt])
            proc.kill()
            proc.wait()
        log.close()


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
        subprocess.run(["fusermount3", "-u", mnt])
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
    rows = []
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
        r_t = median_of(repeats, lambda: fileops(build, "read", key_t, 20000))
        r_m = median_of(repeats, lambda: fileops(build, "read", key_m, 20000))
        rows.append(("open+read+close of an unchanged 100 B key", r_m, r_t, "tmpfs", "<= 1.5x"))
        w_t_ns = median_of(repeats, lambda: fileops(build, "write", w_t, 5000))
        w_m_ns = median_of(repeats, lambda: fileops(build, "write", w_m, 5000))
        rows.append(("`echo v > key` (open+write+close)", w_m_ns, w_t_ns, "tmpfs", "<= 4x"))
    with nullfs_mount(build, os.path.join(tmp, "null")) as f:
        n_r = median_of(repeats, lambda: fileops(build, "read", f, 20000))
        n_w = median_of(repeats, lambda: fileops(build, "write", f, 5000))
    with nullfs_mount(build, os.path.join(tmp, "null-noopen"), no_open=True) as f:
        o_r = median_of(repeats, lambda: fileops(build, "read", f, 20000))
    rows.append(("open+read+close of an unchanged 100 B key", r_m, n_r, "nullfs", "floor"))
    rows.append(("`echo v > key` (open+write+close)", w_m_ns, n_w, "nullfs", "floor"))
    rows.append(("open+read+close, nullfs without OPEN (FLUSH per close)", o_r, r_t, "tmpfs",
                 "info"))
    return rows


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
    out = subprocess.run([os.path.join(build, "tests", "bench", name), *map(str, args)],
                         check=True, capture_output=True, text=True).stdout
    return float(out)


NATS_SETS = 20000     # new 100 B keys per run of the throughput figures
NATS_WRITERS = 4      # threads writing them through the mount
NATS_SYNC = 2000      # round trips per run of the latency figures


def confirmed_sets(build, mount, store):
    """Sets/s through MOUNT: NATS_WRITERS threads write NATS_SETS new files
    into a fresh STORE, timed until .conatfs/status shows nothing pending."""
    d = os.path.join(mount, "bench", store)
    os.makedirs(d)
    return tool(build, "nats-files", "confirmed", d, NATS_SETS, NATS_WRITERS,
                os.path.join(mount, ".conatfs", "status"))


def bench_nats(build, tmp, repeats):
    """Rows (name, conatfs, anchor, anchor name, target, unit); rates in
    sets/s, times in ns.  Runs of conatfs and its anchor alternate."""
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
            raw_sets.append(tool(build, "raw-nats", url, "pipelined", NATS_SETS))
            sets.append(confirmed_sets(build, m, f"sets-{r}"))
            emb_sets.append(confirmed_sets(build, e, f"sets-{r}"))
            raw_puts.append(tool(build, "raw-nats", url, "sync", NATS_SYNC))
            fsyncs.append(tool(build, "nats-files", "fsync", key, NATS_SYNC))
            emb_fsyncs.append(tool(build, "nats-files", "fsync", emb_key, NATS_SYNC))
    med = statistics.median
    return [
        (f"confirmed sets/s: {NATS_WRITERS} writers, {NATS_SETS} new 100 B files, until "
         "status shows 0 pending", med(sets), med(raw_sets), "js_PublishAsync, pipelined",
         ">= 0.5x", "/s"),
        ("close to confirmation: open+write 100 B+fsync+close, median", med(fsyncs),
         med(raw_puts), "kvStore_Put, median", "<= 1.5x", "ns"),
        ("the same sets/s on an embedded mount (the FUSE path alone)", med(emb_sets),
         med(raw_sets), "js_PublishAsync, pipelined", "info", "/s"),
        ("the same open+write+fsync+close on an embedded mount (no network)", med(emb_fsyncs),
         med(raw_puts), "kvStore_Put, median", "info", "ns"),
    ]


def bench_core(build, repeats):
    out = subprocess.run([os.path.join(build, "tests", "bench", "bench-core"), str(repeats)],
                         check=True, capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.startswith("| ") and "figure" not in line]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(SOURCE_ROOT, "build"))
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    build = os.path.abspath(args.build)

    tmp = tempfile.mkdtemp(prefix="conatfs-bench-")
    try:
        rows = bench_files(build, tmp, args.repeats)
        nats = bench_nats(build, tmp, args.repeats)
        core = bench_core(build, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"conatfs benchmark: {os.cpu_count()} cores, {os.uname().release}, "
          f"medians of {args.repeats}")
    print()
    print("| figure | conatfs | anchor | ratio | target |")
    print("|---|---|---|---|---|")
    for name, ours, anchor, anchor_name, target in rows:
        print(f"| {name} | {ours / 1000:.1f} µs | {anchor / 1000:.1f} µs ({anchor_name}) "
              f"| {ours / anchor:.2f}x | {target} |")
    print()
    print("| NATS backend (loopback nats-server, file storage) | conatfs | raw libnats "
          "| ratio | target |")
    print("|---|---|---|---|---|")
    for name, ours, anchor, anchor_name, target, unit in nats:
        if unit == "ns":
            shown = f"{ours / 1000:.0f} µs | {anchor / 1000:.0f} µs ({anchor_name})"
        else:
            shown = f"{ours:,.0f}/s | {anchor:,.0f}/s ({anchor_name})"
        print(f"| {name} | {shown} | {ours / anchor:.2f}x | {target} |")
    print()
    print("| libconat (embedded) | median | target |")
    print("|---|---|---|")
    for line in core:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
