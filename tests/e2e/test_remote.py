"""Changes made elsewhere show by themselves (DESIGN §4): two mounts on one
NATS server; what one writes, the other's kernel caches drop at once."""
import os

import pytest

from conftest import Backend
from util import read, wait_until, write


@pytest.fixture
def backend(nats_server):
    return Backend("nats", ["--server", nats_server])


@pytest.fixture
def pair(mount_factory):
    a, b = mount_factory(), mount_factory()
    da, db = (os.path.join(m.path, "p", "s") for m in (a, b))
    os.makedirs(da)
    wait_until(lambda: os.path.isdir(db), what="the store to show in the other mount")
    return da, db


def shows(path, value):
    try:
        return read(path) == value
    except FileNotFoundError:
        return value is None


def test_value_changed_elsewhere(pair):
    a, b = pair
    write(f"{a}/theme", "dark")
    wait_until(lambda: shows(f"{b}/theme", "dark"), what="the value")
    assert os.stat(f"{b}/theme").st_size == 4
    write(f"{a}/theme", "a longer value")  # cached in b: must be invalidated
    wait_until(lambda: shows(f"{b}/theme", "a longer value"), what="the new value")
    assert os.stat(f"{b}/theme").st_size == len("a longer value")


def test_key_created_and_deleted_elsewhere(pair):
    a, b = pair
    assert not os.path.exists(f"{b}/new")  # a cached negative entry
    write(f"{a}/new", "v")
    wait_until(lambda: shows(f"{b}/new", "v"), what="the new key")
    assert "new" in os.listdir(b)
    os.unlink(f"{a}/new")
    wait_until(lambda: not os.path.exists(f"{b}/new"), what="the key to go")
    assert os.listdir(b) == []


def test_open_file_keeps_reading_a_key_deleted_elsewhere(pair):
    a, b = pair
    write(f"{a}/k", "kept")
    wait_until(lambda: shows(f"{b}/k", "kept"), what="the value")
    with open(f"{b}/k") as f:
        os.unlink(f"{a}/k")
        wait_until(lambda: not os.path.exists(f"{b}/k"), what="the key to go")
        assert f.read() == "kept"
