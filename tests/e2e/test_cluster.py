"""Many machines (DESIGN §6, issue 4): mounts attached to different nodes of
a three-node JetStream cluster, with buckets replicated three times
(`--replicas 3`), see each other's writes; a mount given every node keeps
working when its node stops."""
import json
import os

import pytest

from conftest import Backend
from natsfixtures import settle_echoes  # noqa: F401 (fixture)
from natsfixtures import bucket, kvjs, kvjs_get, saved, shows
from util import read, run, wait_until, write

pytestmark = pytest.mark.usefixtures("settle_echoes")

SETTLE = 60.0  # a watch whose consumer lived on the lost node resumes after missed heartbeats


def conatfs_connections(node):
    """How many conatfs daemons are connected to NODE."""
    return sum(c.get("name") == "conatfs" for c in node.monitor("/connz")["connections"])


@pytest.fixture
def backend(nats_cluster):
    """The servers differ per mount (extra=); buckets get three replicas."""
    return Backend("nats", ["--replicas", "3"])


@pytest.fixture
def trio(mount_factory, nats_cluster):
    """One mount on each node, and the same store dir in each."""
    mounts = [mount_factory(extra=["--server", url]) for url in nats_cluster.urls]
    dirs = [os.path.join(m.path, "project-1", "shared") for m in mounts]
    os.makedirs(dirs[0])
    for d in dirs[1:]:
        wait_until(lambda: os.path.isdir(d), what="the store on the other nodes")
    return mounts, dirs


def test_mounts_on_different_nodes_see_each_others_writes(trio, nats_cluster):
    mounts, dirs = trio
    for i, d in enumerate(dirs):
        write(f"{d}/from-{i}", f"written on node {i}\n")
    for d in dirs:
        for i in range(3):
            wait_until(lambda: shows(f"{d}/from-{i}", f"written on node {i}\n".encode()),
                       what=f"node {i}'s key in {d}")
    write(f"{dirs[2]}/from-0", "changed on node 2")
    wait_until(lambda: shows(f"{dirs[0]}/from-0", b"changed on node 2"), what="the change")
    run(f"rm {dirs[1]}/from-1")
    for d in dirs:
        wait_until(lambda: not os.path.exists(f"{d}/from-1"), what=f"the delete in {d}")
    # The bucket has three replicas, and every node serves the same values.
    info = json.loads(kvjs(nats_cluster.urls[1], "info", bucket("project-1", "shared")).stdout)
    assert info["replicas"] == 3 and info["storage"] == "file"
    for url in nats_cluster.urls:
        assert kvjs_get(url, bucket("project-1", "shared"), "from-2") == b"written on node 2\n"


def test_a_mount_survives_the_loss_of_its_node(mount_factory, nats_cluster):
    """A mount given every node fails over when its node stops; R3 buckets
    keep their data and take writes with two nodes of three."""
    n0, n1, n2 = nats_cluster.nodes
    b = mount_factory(extra=["--server", n1.url])
    a = mount_factory(extra=["--server", f"{n0.url},{n2.url}"])
    da, db = (os.path.join(m.path, "p", "s") for m in (a, b))
    os.makedirs(da)
    write(f"{da}/before", "1")
    wait_until(lambda: shows(f"{db}/before", b"1"), what="the key on b")
    # Stop the node a is connected to (libnats picks one of the list at random).
    a_node = n0 if conatfs_connections(n0) else n2
    assert conatfs_connections(a_node) == 1
    a_node.stop()
    write(f"{da}/during", "2")  # queued until a is connected again
    wait_until(lambda: saved(a), timeout=SETTLE, what="a to fail over and save")
    wait_until(lambda: shows(f"{db}/during", b"2"), timeout=SETTLE, what="a's write on b")
    write(f"{db}/from-b", "3")
    wait_until(lambda: shows(f"{da}/from-b", b"3"), timeout=SETTLE, what="b's write on a")
    assert read(f"{da}/before") == "1"
