"""What vmcoreos takes from a real etcd (Debian's etcd-server): hostile member lists, cluster IDs, the lock, TLS."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import requests

from vmcoreos.cluster import nodes as node_ops
from vmcoreos.cluster.inventory import Inventory
from vmcoreos.cluster.members import Members
from vmcoreos.cluster.results import NodeStatus
from vmcoreos.cluster.run import Run
from vmcoreos.reporting import QuietReporter
from vmcoreos import etcd
from vmcoreos.errors import EtcdError, LockedError
from vmcoreos.guest import compose, nodeconfig
from vmcoreos.clusterfile import parse_cluster
from tests.harness.services import stop_process

pytestmark = pytest.mark.e2e  # runs Debian's /usr/bin/etcd

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
HOSTILE = 'lab-02"\nExecStartPre=/bin/sh -c "touch /tmp/pwned"\nEnvironment="X=1'


class RealEtcd:
    def __init__(self, workdir: Path, ip: str, tls: tuple[Path, Path] | None = None):
        self.workdir, self.ip, self.tls = workdir, ip, tls
        scheme = "https" if tls else "http"
        self.endpoint = f"{scheme}://{ip}:2379"
        self.proc: subprocess.Popen | None = None
        self.client = etcd.Client()  # what start() asks for health; a TLS test gives one trusting its CA

    def start(self, name: str = "lab-01", *, initial_name: str | None = None) -> "RealEtcd":
        peer = f"http://{self.ip}:2380"
        args = ["/usr/bin/etcd", "--name", name, "--data-dir", str(self.workdir / "data"),
                "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"{initial_name or name}={peer}"]
        if self.tls:
            args += ["--cert-file", str(self.tls[0]), "--key-file", str(self.tls[1])]
        with open(self.workdir / "etcd.log", "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not self.client.healthy(self.endpoint):
            assert self.proc.poll() is None and time.monotonic() < deadline, (self.workdir / "etcd.log").read_text()
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


@pytest.fixture
def real_etcd(tmp_path, subnet):
    server = RealEtcd(tmp_path, f"{subnet}.11")
    try:
        yield server
    finally:
        server.stop()


def _hostile(server: RealEtcd) -> None:
    """A member that renamed itself: etcd takes --name from the member on restart, unchecked.

    (--initial-cluster, read only on the first start, cannot hold a name with '=' in it.)
    """
    server.start("lab-02")
    server.stop()
    server.start(HOSTILE, initial_name="lab-02")


@pytest.mark.parametrize("config", ["flatcar-etcd-member.yaml", "flatcar-ignition.json"])
def test_a_hostile_member_name_from_a_real_etcd_never_reaches_a_new_node(real_etcd, tmp_path, mocker, config):
    _hostile(real_etcd)
    assert etcd.Client().member_list(real_etcd.endpoint).members[0].name == HOSTILE  # the bed really serves it
    name = "node.json" if config.endswith(".json") else "node.yaml"
    (tmp_path / name).write_text((CONFIGS / config).read_text())
    ip = real_etcd.ip
    settings = parse_cluster({"cluster": "lab", "count": 3, "node": {"config": name, "network": {
        "mode": "static", "addresses": [f"{ip}-{ip.rsplit('.', 1)[0]}.13/8"]}}}, base_dir=tmp_path)
    c = object.__new__(Run)
    c.settings, c.session, c.reporter = settings, mocker.Mock(), QuietReporter()
    c.user, c.members = nodeconfig.load_user_config(settings), Members(settings)
    rendered: list[str] = []
    mocker.patch.object(node_ops, "clone", lambda run, t, i, conf, d: rendered.append(conf.config_text))
    mocker.patch.object(Run, "inventory", return_value=Inventory("lab"))
    mocker.patch.object(node_ops, "wait_joined", return_value={"lab-03": NodeStatus("lab-03")})
    # A second voting member could never start here; the refusal must come before member add anyway.
    add = mocker.patch.object(etcd.Client, "member_add", return_value=etcd.Member("9", "", (), ()))
    config_3 = compose.node_configs(settings, nodeconfig.load_user_config(settings), count=3, only=["lab-03"])[0]
    error = None
    try:
        node_ops.join(c, mocker.Mock(), mocker.Mock(), config_3, real_etcd.endpoint)
    except EtcdError as exc:
        error = exc
    injected = [line for text in rendered for line in text.replace("\\n", "\n").splitlines()
                if line.strip().startswith("ExecStartPre=")]
    assert injected == []
    assert error is not None and "member 'lab-02\"\\nExecStartPre=" in error.message
    assert "\n" not in error.message
    add.assert_not_called()
    assert rendered == []


def test_the_v3_cluster_id_is_read_from_the_reply_header(real_etcd):
    real_etcd.start()
    raw = requests.post(f"{real_etcd.endpoint}/v3/cluster/member/list", json={}, timeout=5).json()
    view = etcd.Client().member_list(real_etcd.endpoint)
    assert view.cluster_id == format(int(raw["header"]["cluster_id"]), "x")
    assert etcd.check_view(view, "lab", real_etcd.endpoint) is view


def _ttl_left(endpoint: str, lease: str) -> int:
    reply = requests.post(f"{endpoint}/v3/lease/timetolive", json={"ID": lease}, timeout=5).json()
    return int(reply.get("TTL", -1))


def test_the_lock_keepalive_follows_a_surviving_member(real_etcd, subnet):
    real_etcd.start()
    gone = f"http://{subnet}.99:2379"  # a member a rebuild destroyed: nothing listens there any more
    lock = etcd.EtcdLock(etcd.Client(), [real_etcd.endpoint], "lab", "host:1", ttl=3)
    assert lock.acquire()
    try:
        lock.endpoints = [gone, real_etcd.endpoint]
        time.sleep(3.5)  # longer than the TTL: only renewals through the survivor keep the lease
        lock.check()
        assert _ttl_left(real_etcd.endpoint, lock.lease) > 0
        assert lock.endpoint == real_etcd.endpoint
    finally:
        lock.release()


def test_a_lock_whose_keepalive_fails_stops_the_run(real_etcd):
    real_etcd.start()
    lock = etcd.EtcdLock(etcd.Client(), [real_etcd.endpoint], "lab", "host:1", ttl=3)
    assert lock.acquire()
    try:
        real_etcd.stop()
        time.sleep(2.5)
        with pytest.raises(LockedError, match="no longer held .*no etcd member renewed its lease"):
            lock.check()
    finally:
        lock.release()


@pytest.fixture
def tls_files(tmp_path, subnet):
    ip = f"{subnet}.11"
    ca_key, ca, key, csr, cert = (tmp_path / n for n in ("ca.key", "ca.pem", "etcd.key", "etcd.csr", "etcd.pem"))

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-days", "1",
            "-subj", "/CN=vmcoreos test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={ip}")
    ext = tmp_path / "san.ext"
    ext.write_text(f"subjectAltName=IP:{ip}\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(cert), "-days", "1", "-extfile", str(ext))
    return ca, cert, key


def test_etcd_over_https_with_the_cluster_files_ca(tmp_path, subnet, tls_files):
    ca, cert, key = tls_files
    server = RealEtcd(tmp_path, f"{subnet}.11", tls=(cert, key))
    trusting = server.client = etcd.Client(str(ca))
    try:
        server.start()
        assert server.endpoint.startswith("https://")
        assert [m.name for m in trusting.member_list(server.endpoint).members] == ["lab-01"]
        lock = etcd.EtcdLock(trusting, [server.endpoint], "lab", "host:1")
        assert lock.acquire()
        lock.release()
        with pytest.raises(requests.exceptions.SSLError):  # system CAs only: the test CA's certificate is refused
            etcd.Client().member_list(server.endpoint)
    finally:
        trusting.close()
        server.stop()


def test_cluster_file_etcd_tls_settings(tmp_path, tls_files):
    ca = tls_files[0]
    static = {"network": {"mode": "static", "addresses": ["10.0.0.21/24"]}}
    settings = parse_cluster({"cluster": "lab", "etcd": {"ca_file": str(ca)}, "node": static}, base_dir=tmp_path)
    assert settings.etcd.scheme == "https" and settings.etcd.ca_file == ca
    configs = compose.node_configs(settings, nodeconfig.load_user_config(settings), count=1)
    assert "ETCD_ADVERTISE_CLIENT_URLS=https://" in configs[0].config_text
    from vmcoreos.errors import ConfigError

    with pytest.raises(ConfigError, match="etcd.ca_file is set but etcd.scheme is http"):
        parse_cluster({"cluster": "lab", "etcd": {"ca_file": str(ca), "scheme": "http"}}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="etcd.ca_file .* does not exist"):
        parse_cluster({"cluster": "lab", "etcd": {"ca_file": "nope.pem"}}, base_dir=tmp_path)


def test_with_scheme_https_a_member_advertising_http_is_still_spoken_to_over_tls(tmp_path, subnet, tls_files):
    # Member-advertised URLs are etcd's word: with etcd.scheme https, an http:// one must not take the lock,
    # the health checks or a leader move into the clear.
    ca, cert, key = tls_files
    server = RealEtcd(tmp_path, f"{subnet}.11", tls=(cert, key))
    tls = server.client = etcd.Client(str(ca), "https")
    try:
        server.start()
        plain = server.endpoint.replace("https://", "http://")
        assert tls.healthy(plain)
        assert [m.name for m in tls.member_list(plain).members] == ["lab-01"]
        lock = etcd.EtcdLock(tls, [plain], "lab", "host:1")
        assert lock.acquire()
        lock.release()
    finally:
        tls.close()
        server.stop()
