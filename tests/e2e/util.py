"""Helpers shared by the end-to-end tests (fixtures are in conftest.py)."""
import os
import subprocess
import time

CONATFS = os.environ["CONATFS"]
CONAT_KV = os.environ["CONAT_KV"]
DEADLINE = 10.0  # seconds to wait for anything that should happen at once


def wait_until(condition, timeout=DEADLINE, what="condition"):
    """Polls CONDITION until it returns a true value; fails after TIMEOUT."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def wait_explained(condition, explain, timeout=DEADLINE, what="condition"):
    """wait_until, and on a timeout, say what EXPLAIN () finds then."""
    try:
        wait_until(condition, timeout=timeout, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}: {explain()}") from None


def run(cmd, check=True, **kwargs):
    """Runs a shell command line; returns the CompletedProcess (text)."""
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60, **kwargs)
    if check:
        assert res.returncode == 0, f"{cmd!r} failed ({res.returncode}): {res.stderr}"
    return res


def fails_with(cmd, errno_value, **kwargs):
    """Runs CMD, which must fail showing the message of ERRNO_VALUE."""
    res = run(cmd, check=False, **kwargs)
    assert res.returncode != 0, f"{cmd!r} succeeded"
    assert os.strerror(errno_value) in res.stderr, f"{cmd!r}: {res.stderr}"


def conat_kv(data, *args, input=b""):
    """The helper client of an embedded data dir (only while no daemon runs)."""
    return subprocess.run([CONAT_KV, str(data), *args], input=input, capture_output=True,
                          timeout=120, check=True).stdout


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def write(path, data, mode="w"):
    with open(path, mode) as f:
        f.write(data)
