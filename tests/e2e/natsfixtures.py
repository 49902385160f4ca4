"""Real NATS servers for end-to-end tests (STYLE §13): no mock backend.

`nats` is one `nats-server -js` on a free loopback port with its JetStream
store in the test's temporary directory; `nats_cluster` is three of them
joined by routes into one JetStream cluster.  Each server is started from a
config file, is ready when its monitoring endpoint says JetStream is up (for
a cluster: every node knows the meta leader), and is stopped by its pid:
SIGTERM, then SIGKILL if it does not exit in time.  A stopped server can be
started again on the same port with the same store directory.  No server
outlives its test.
"""
import base64
import json
import os
import signal
import socket
import subprocess
import urllib.request

import pytest

from util import read, wait_until

NATS_SERVER = "nats-server"
STOP_TIMEOUT = 10.0  # SIGTERM lets JetStream flush; SIGKILL after this

_running = {}  # pid -> Popen of every server started and not stopped yet


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_is_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class NatsServer:
    """One nats-server process; start() again after stop() keeps port and data."""

    def __init__(self, workdir, name="n0", max_payload=None, cluster=None):
        self.name = name
        self.dir = os.path.join(str(workdir), name)
        self.store_dir = os.path.join(self.dir, "jetstream")
        self.config = os.path.join(self.dir, "server.conf")
        self.log = os.path.join(self.dir, "server.log")
        self.port = free_port()
        self.http_port = free_port()
        self.cluster_port = free_port() if cluster else None
        self.max_payload = max_payload
        self.cluster = cluster  # (cluster name, [route ports of the others]) or None
        self.proc = None
        os.makedirs(self.store_dir, exist_ok=True)

    @property
    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def write_config(self, routes=()):
        lines = [f"server_name: {self.name}",
                 f"listen: 127.0.0.1:{self.port}",
                 f"http: 127.0.0.1:{self.http_port}",
                 f'jetstream {{ store_dir: "{self.store_dir}" }}']
        if self.max_payload:
            lines.append(f"max_payload: {self.max_payload}")
        if self.cluster:
            lines.append("cluster {")
            lines.append(f"  name: {self.cluster}")
            lines.append(f"  listen: 127.0.0.1:{self.cluster_port}")
            lines.append("  routes: [" + ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
                         + "]")
            lines.append("}")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        assert self.proc is None, f"{self.name} is running"
        if not os.path.exists(self.config):
            self.write_config()
        # A restart reuses the port: the old process must have let go of it.
        wait_until(lambda: _port_is_free(self.port), what=f"port {self.port} to be free")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([NATS_SERVER, "-c", self.config],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        _running[self.proc.pid] = self.proc

    def monitor(self, path):
        """The JSON of a monitoring endpoint, or None if it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                        timeout=2) as r:
                return json.load(r)
        except (OSError, ValueError):
            return None

    def check_alive(self):
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"nats-server {self.name} is not running:\n{self.log_text()}")

    def jetstream_ready(self, cluster_size=1):
        self.check_alive()
        jsz = self.monitor("/jsz")
        if jsz is None or not jsz.get("config"):
            return False
        if cluster_size == 1:
            return self.monitor("/healthz") == {"status": "ok"}
        meta = jsz.get("meta_cluster") or {}
        if not meta.get("leader") or meta.get("cluster_size") != cluster_size:
            return False
        # Routes to every other node (duplicates settled: a request sent on
        # a route that closes as a duplicate is lost), and JetStream healthy.
        routez = self.monitor("/routez") or {}
        peers = {r.get("remote_id") for r in routez.get("routes", [])}
        return (len(peers) == cluster_size - 1 == routez.get("num_routes")
                and self.monitor("/healthz") == {"status": "ok"})

    def wait_ready(self, cluster_size=1, timeout=30.0):
        wait_until(lambda: self.jetstream_ready(cluster_size), timeout=timeout,
                   what=f"nats-server {self.name} to serve JetStream")

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; by pid only."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _running.pop(proc.pid, None)

    def restart(self):
        self.stop()
        self.start()
        self.wait_ready()

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""


class NatsCluster:
    """Three nats-servers joined by routes into one JetStream cluster."""

    def __init__(self, workdir, size=3, name="conatfs"):
        self.nodes = [NatsServer(workdir, f"n{i}", cluster=name) for i in range(size)]
        for node in self.nodes:
            node.write_config(routes=[n.cluster_port for n in self.nodes if n is not node])

    @property
    def urls(self):
        return [n.url for n in self.nodes]

    def start(self):
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_ready(cluster_size=len(self.nodes), timeout=60.0)

    def stop(self):
        for node in self.nodes:
            node.stop()


@pytest.fixture
def nats_options():
    """Keyword arguments of NatsServer for `nats`; parametrize to change."""
    return {}


@pytest.fixture
def nats(tmp_path, nats_options):
    """A running single-node nats-server (NatsServer) with JetStream."""
    server = NatsServer(tmp_path / "nats", **nats_options)
    try:
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def nats_cluster(tmp_path):
    """A running three-node JetStream cluster (NatsCluster)."""
    cluster = NatsCluster(tmp_path / "cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(autouse=True, scope="session")
def no_nats_left():
    """Every server was stopped by its test; one that was not fails the
    session, and is killed so that nothing is left behind."""
    yield
    left = [pid for pid, proc in _running.items() if proc.poll() is None]
    for pid in left:
        _running[pid].kill()
        _running[pid].wait()
    assert not left, f"nats-server processes left running: {left}"


# ------------------------------------------ names, the Node.js client, mounts

INTEROP = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "interop")


def nats_name(name: bytes) -> str:
    """E() of docs/nats-mapping.md: a scope or store as a bucket-name part."""
    return "".join(chr(c) if chr(c).isascii() and chr(c).isalnum() else f"_{c:02X}"
                   for c in name)


def bucket(scope, store):
    return "conat_" + nats_name(scope.encode()) + "-" + nats_name(store.encode())


def nats_key(key: bytes) -> str:
    """K() of docs/nats-mapping.md: a key as a NATS KV key."""
    if not key:
        return "=00"
    out = []
    for i, c in enumerate(key):
        ch = chr(c)
        if (ch.isascii() and ch.isalnum()) or ch in "_-/":
            out.append(ch)
        elif ch == "." and 0 < i < len(key) - 1 and key[i - 1] != ord("."):
            out.append(ch)
        else:
            out.append(f"={c:02X}")
    return "".join(out)


def kvjs(url, *args, input=b"", check=True):
    """Runs tests/interop/kv.js, the independent Node.js client."""
    res = subprocess.run(["node", "kv.js", url, *args], cwd=INTEROP, input=input,
                         capture_output=True, timeout=60)
    if check:
        assert res.returncode == 0, f"kv.js {args} failed ({res.returncode}): {res.stderr!r}"
    return res


def kvjs_get(url, bkt, key):
    """The value a NATS client reads, or None if the key is absent."""
    res = kvjs(url, "get", bkt, key, check=False)
    assert res.returncode in (0, 2), f"kv.js get failed: {res.stderr!r}"
    return res.stdout if res.returncode == 0 else None


def kvjs_dump(url, bkt):
    """Every key of BKT with its value, as a NATS client reads them."""
    dump = json.loads(kvjs(url, "dump", bkt).stdout)
    return {k: base64.b64decode(v) for k, v in dump.items()}


def embedded_or_nats(request, tmp_path):
    """The Backend for a `backend` fixture parametrized with "embedded" and "nats"."""
    from conftest import Backend

    if request.param == "embedded":
        return Backend("embedded", ["--data", str(tmp_path / "data")], tmp_path / "data")
    return Backend("nats", ["--server", request.getfixturevalue("nats").url])


# Runs a test of such a module on NATS only.
nats_only = pytest.mark.parametrize("backend", ["nats"], indirect=True)


def status(m):
    with open(os.path.join(m.path, ".conatfs", "status")) as f:
        return json.load(f)


def saved(m):
    """Connected, and nothing waits to be saved."""
    s = status(m)
    return s["connected"] and s["pending"] == 0


@pytest.fixture
def settle_echoes(mount_factory):
    """At the end of a test, waits until no running mount has an inotify echo
    of a remote change queued: a daemon unmounted while its echo thread works
    through its own mountpoint can hang for good (a conatfs bug, reported)."""
    yield
    for d in mount_factory.daemons:
        if d.proc.poll() is None and os.path.ismount(d.path):
            wait_until(lambda: status(d).get("echoes_pending", 0) == 0, timeout=60,
                       what=f"the inotify echoes of {d.path}")


def shows(path, value: bytes):
    """PATH reads VALUE (None: PATH does not exist)."""
    try:
        return read(path, "rb") == value
    except FileNotFoundError:
        return value is None


def fsync_errno(path):
    """fsync of PATH opened read-only: 0 or the errno."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        return 0
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)
