#!/usr/bin/python3
"""Run the conatfs benchmarks and print one table.

    /usr/bin/python3 tests/bench/run.py [--build build] [--repeats 7]

Each figure is the median over repeats, next to its anchor measured in the
same run (tmpfs for file operations, and nullfs, the cheapest possible FUSE
daemon, for the floor of the kernel round trips), so the ratios hold on a
shared, noisy machine.  Starts its own mounts (as root: a tmpfs too) and leaves nothing
behind.
"""
import argparse
import contextlib
import os
import shutil
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
    os.makedirs(mnt)
    log = open(os.path.join(os.path.dirname(mnt), os.path.basename(mnt) + ".log"), "w")
    proc = subprocess.Popen([os.path.join(build, "fs", "conatfs"), "-f", "--data", data,
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
    print("| libconat (embedded) | median | target |")
    print("|---|---|---|")
    for line in core:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
