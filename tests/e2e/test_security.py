"""Security (issue 8): the mount is private to its owner unless mounted with
allow_other (and then default_permissions applies the mode bits); secrets
given through files never show in ps, the log, the status file or xattrs;
a NATS user allowed one scope gets EACCES elsewhere; TLS with a test CA
made here with openssl.  Users created here are removed, servers stopped.
"""
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

from conftest import Backend
from natsfixtures import NatsServer, status
from util import CONATFS, DEADLINE, read, run, wait_until, write


@pytest.fixture
def shared_dir():
    """A directory under /tmp that other users may enter (tmp_path may not)."""
    path = tempfile.mkdtemp(prefix="conatfs-sec-", dir="/tmp")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def other_user():
    """A local user made for this test: (uid, gid); removed at the end."""
    name = f"conatfs{os.getpid() % 100000}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)
    try:
        pw = pwd.getpwnam(name)
        yield pw.pw_uid, pw.pw_gid
    finally:
        subprocess.run(["userdel", name], capture_output=True)


def as_user(user, cmd):
    uid, gid = user
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                           "sh", "-c", cmd], capture_output=True, text=True, timeout=60)


# ------------------------------------------------- 9. private by default

def test_mount_is_private_by_default(shared_dir, mount_factory, other_user):
    os.makedirs(f"{shared_dir}/mnt")
    m = mount_factory(mountpoint=f"{shared_dir}/mnt")
    os.makedirs(f"{m.path}/p/s")
    write(f"{m.path}/p/s/k", "secret value")
    for cmd in (f"ls {m.path}", f"cat {m.path}/p/s/k", f"stat {m.path}/p",
                f"echo x > {m.path}/p/s/new"):
        res = as_user(other_user, cmd)
        assert res.returncode != 0 and "Permission denied" in res.stderr, (cmd, res)
    assert read(f"{m.path}/p/s/k") == "secret value"  # the owner still can


def test_allow_other_applies_mode_bits(shared_dir, mount_factory, other_user):
    os.makedirs(f"{shared_dir}/mnt")
    m = mount_factory(["allow_other,default_permissions"], mountpoint=f"{shared_dir}/mnt")
    os.makedirs(f"{m.path}/p/s")
    write(f"{m.path}/p/s/k", "shared value")
    assert os.stat(f"{m.path}/p/s/k").st_mode & 0o777 == 0o644
    res = as_user(other_user, f"cat {m.path}/p/s/k; ls {m.path}/p/s")
    assert res.returncode == 0 and res.stdout == "shared valuek\n", res
    for cmd in (f"echo x > {m.path}/p/s/k", f"echo x > {m.path}/p/s/new",
                f"rm {m.path}/p/s/k", f"mkdir {m.path}/p/s2"):
        res = as_user(other_user, cmd)
        assert res.returncode != 0 and "Permission denied" in res.stderr, (cmd, res)
    assert read(f"{m.path}/p/s/k") == "shared value"
    assert os.listdir(f"{m.path}/p/s") == ["k"]


# ------------------------------------------------ NATS servers with auth

@pytest.fixture
def server_factory(tmp_path):
    """Starts nats-servers with extra config lines; stops them at the end."""
    servers = []

    def start(extra, ready=True):
        server = NatsServer(tmp_path / "nats", name=f"s{len(servers)}")
        server.write_config()
        with open(server.config, "a") as f:
            f.write(extra + "\n")
        servers.append(server)
        server.start()
        if ready:
            server.wait_ready()
        return server
    try:
        yield start
    finally:
        for s in servers:
            s.stop()


@pytest.fixture(params=["embedded"])
def backend(request, tmp_path):
    """embedded, or nats: then each test gives its daemons their server and
    credentials (extra=)."""
    if request.param == "nats":
        return Backend("nats", [])
    return Backend("embedded", ["--data", str(tmp_path / "data")], tmp_path / "data")


def secret_file(tmp_path, name, secret):
    path = tmp_path / name
    path.write_text(secret + "\n")
    os.chmod(path, 0o600)
    return str(path)


def all_xattrs(path):
    out = b""
    for name in os.listxattr(path):
        try:
            out += name.encode() + b"=" + os.getxattr(path, name) + b"\n"
        except OSError:
            pass
    return out


# ---------------------------------------------------- 10. secrets leak not

PASSWORD = "pw-Zq8sEcReT-4711"
TOKEN = "tok-Xy7sEcReT-0815"


@pytest.mark.parametrize("backend", ["nats"], indirect=True)
@pytest.mark.parametrize("kind", ["password", "token"])
def test_secrets_never_leak(tmp_path, server_factory, mount_factory, kind):
    if kind == "password":
        secret = PASSWORD
        server = server_factory(f'authorization {{ user: alice, password: "{PASSWORD}" }}')
        extra = ["--user", "alice", "--password-file",
                 secret_file(tmp_path, "password", PASSWORD)]
    else:
        secret = TOKEN
        server = server_factory(f'authorization {{ token: "{TOKEN}" }}')
        extra = ["--token-file", secret_file(tmp_path, "token", TOKEN)]
    m = mount_factory(extra=["-v", "--server", server.url, *extra])
    d = f"{m.path}/project-a/s"
    os.makedirs(d)
    write(f"{d}/k", "value")
    wait_until(lambda: status(m)["pending"] == 0, what="the value to be saved")
    places = {
        "cmdline": read(f"/proc/{m.proc.pid}/cmdline", "rb"),
        "environ": read(f"/proc/{m.proc.pid}/environ", "rb"),
        "ps": run("ps auxww").stdout.encode(),
        "status": read(f"{m.path}/.conatfs/status", "rb"),
        "xattrs": b"".join(all_xattrs(p) for p in (m.path, f"{m.path}/project-a", d, f"{d}/k",
                                                    f"{m.path}/.conatfs/status")),
    }
    m.unmount()
    places["log"] = m.stderr.encode()
    assert len(places["log"]) > 0  # -v logged something
    for where, text in places.items():
        assert secret.encode() not in text, f"the {kind} shows in {where}"
    # and a wrong secret is refused at start: exit status 1, a clear message
    bad = secret_file(tmp_path, "bad", "wrong")
    flag = "--password-file" if kind == "password" else "--token-file"
    os.makedirs(tmp_path / "mnt-bad")
    res = subprocess.run([CONATFS, "-f", "--server", server.url, *extra[:-2], flag, bad,
                          str(tmp_path / "mnt-bad")], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1, res
    assert "wrong" not in res.stderr and len(res.stderr.strip().splitlines()) <= 2, res.stderr
    assert "refused the credentials" in res.stderr, res.stderr


# ------------------------------------------------------------------ 12. TLS

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_cert(d, name, ca=None):
    """A key and certificate for 127.0.0.1 signed by CA (or self-signed)."""
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    sign = (["-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial"] if ca
            else ["-signkey", f"{name}.key"])
    openssl("x509", "-req", "-in", f"{name}.csr", *sign, "-out", f"{name}.pem", "-days", "2",
            "-extfile", f"{name}.ext", cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    os.makedirs(d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=conatfs test CA", cwd=d)
    good = make_cert(d, "server", ca="ca")
    rogue = make_cert(d, "rogue")
    return str(d / "ca.pem"), good, rogue


def tls_config(cert):
    return f'tls {{ cert_file: "{cert[0]}", key_file: "{cert[1]}" }}'


@pytest.mark.parametrize("backend", ["nats"], indirect=True)
def test_tls_with_a_test_ca(tmp_path, pki, server_factory, mount_factory):
    ca, good, rogue = pki
    server = server_factory(tls_config(good))
    m = mount_factory(extra=["--server", server.url, "--tls-ca", ca])
    d = f"{m.path}/project-a/tls"
    os.makedirs(d)
    write(f"{d}/k", "over tls")
    wait_until(lambda: status(m)["connected"] and status(m)["pending"] == 0,
               what="the value saved over TLS")
    m2 = mount_factory(extra=["--server", server.url, "--tls-ca", ca])
    wait_until(lambda: os.path.exists(f"{m2.path}/project-a/tls/k"), what="the key on m2")
    assert read(f"{m2.path}/project-a/tls/k") == "over tls"
    # A server whose certificate the CA did not sign is refused.
    other = server_factory(tls_config(rogue))
    os.makedirs(tmp_path / "mnt-rogue")
    res = subprocess.run([CONATFS, "-f", "--server", other.url, "--tls-ca", ca,
                          str(tmp_path / "mnt-rogue")], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1, res
    assert "cannot connect" in res.stderr and "certificate" in res.stderr, res.stderr
    assert not os.path.ismount(tmp_path / "mnt-rogue")


# ------------------------------------------------ 11. NATS authorization

# A bucket name is one subject token ("conat_project_2Da-s"), so NATS
# permissions name stores, not scopes: alice is denied project-b's store
# "s" (its KV subjects and its stream's JetStream API) and allowed the rest.
B_STREAM = "KV_conat_project_2Db-s"
AUTHZ = f'''
authorization {{
  users = [
    {{ user: admin, password: admin-pw }}
    {{ user: alice, password: alice-pw, permissions: {{
        publish: {{ allow: ">", deny: ["$KV.conat_project_2Db-s.>",
                                       "$JS.API.*.*.{B_STREAM}", "$JS.API.*.*.{B_STREAM}.>",
                                       "$JS.API.DIRECT.GET.{B_STREAM}",
                                       "$JS.API.DIRECT.GET.{B_STREAM}.>"] }}
        subscribe: {{ allow: ">", deny: ["$KV.conat_project_2Db-s.>"] }} }} }}
  ]
}}
'''


@pytest.mark.parametrize("backend", ["nats"], indirect=True)
def test_nats_user_allowed_one_scope(tmp_path, server_factory, mount_factory):
    server = server_factory(AUTHZ)
    admin = mount_factory(extra=["--server", server.url, "--user", "admin", "--password-file",
                                 secret_file(tmp_path, "admin-pw", "admin-pw")])
    for scope in ("project-a", "project-b"):
        os.makedirs(f"{admin.path}/{scope}/s")
        write(f"{admin.path}/{scope}/s/k", f"{scope} value")
    wait_until(lambda: status(admin)["pending"] == 0, what="admin's values saved")
    alice = mount_factory(extra=["--server", server.url, "--user", "alice", "--password-file",
                                 secret_file(tmp_path, "alice-pw", "alice-pw")],
                          allow=[r"[Pp]ermission|not allowed|denied"])
    a, b = f"{alice.path}/project-a/s", f"{alice.path}/project-b/s"
    assert read(f"{a}/k") == "project-a value"
    write(f"{a}/k2", "from alice")
    wait_until(lambda: status(alice)["pending"] == 0, what="alice's value saved")
    wait_until(lambda: os.path.exists(f"{admin.path}/project-a/s/k2"), what="k2 on admin")
    assert read(f"{admin.path}/project-a/s/k2") == "from alice"
    for cmd in (f"ls {b}", f"cat {b}/k", f"echo x > {b}/k"):
        res = run(cmd, check=False)
        assert res.returncode != 0 and "Permission denied" in res.stderr, (cmd, res)
    assert read(f"{admin.path}/project-b/s/k") == "project-b value"
    log = alice.stderr.lower()
    assert "permission denied for nats bucket conat_project_2db-s" in log, alice.stderr
    # alice keeps working in project-a
    write(f"{a}/k3", "still")
    wait_until(lambda: status(alice)["pending"] == 0 and status(alice)["connected"],
               what="alice's later value saved")
