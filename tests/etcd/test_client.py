"""The etcd client's HTTP edge: the API prefix is read once from /version, not probed per call."""

import json

import pytest

from vmcoreos import etcd
from vmcoreos.errors import EtcdError

ENDPOINT = "http://10.0.0.1:2379"
MEMBERS = {"header": {"cluster_id": "255"}, "members": [
    {"ID": "16", "name": "lab-01", "peerURLs": ["http://10.0.0.1:2380"], "clientURLs": [ENDPOINT]}]}


class FakeEtcd:
    """Answers like an etcd of `version`: only its own v3 prefix exists; every request is recorded."""

    def __init__(self, mocker, version: str | None):
        self.version, self.asked = version, []
        mocker.patch("requests.Session.request", side_effect=self.reply)

    def reply(self, method, url, **kwargs):
        path = url.removeprefix(ENDPOINT)
        self.asked.append((method, path))
        prefix = etcd.v3_prefix(self.version) if self.version else ""
        if path == "/version" and self.version:
            return _resp(200, {"etcdserver": self.version, "etcdcluster": self.version})
        if prefix and path == f"{prefix}/cluster/member/list":
            return _resp(200, MEMBERS)
        if prefix and path == f"{prefix}/maintenance/status":
            return _resp(200, {"leader": "16"})
        if not prefix and path == "/v2/members":
            return _resp(200, {"members": [{"id": "10", "name": "lab-01", "peerURLs": [], "clientURLs": []}]})
        return _resp(404, b"404 page not found")


def _resp(status, body):
    from unittest.mock import MagicMock

    resp = MagicMock(status_code=status, headers={})
    resp.__enter__.return_value = resp
    resp.iter_content.return_value = iter([body if isinstance(body, bytes) else json.dumps(body).encode()])
    return resp


@pytest.mark.parametrize("version,prefix", [
    ("3.5.9", "/v3"), ("3.4.23", "/v3"), ("3.3.27", "/v3beta"), ("3.2.32", "/v3alpha"), ("3.0.17", "/v3alpha"),
    ("2.3.8", ""), ("", ""), ("garbage", ""), ("4.0.0", "/v3"),
])
def test_the_v3_prefix_follows_the_server_version(version, prefix):
    assert etcd.v3_prefix(version) == prefix


@pytest.mark.parametrize("version,source", [("3.4.23", "/v3"), ("3.3.27", "/v3beta"), ("3.2.32", "/v3alpha")])
def test_version_is_asked_once_and_only_that_prefix_is_used(mocker, version, source):
    fake = FakeEtcd(mocker, version)
    client = etcd.Client()
    for _ in range(3):
        view = client.member_list(ENDPOINT)
    assert view.source == f"{source}/cluster/member/list" and view.leader == "10" and view.cluster_id == "ff"
    assert fake.asked.count(("GET", "/version")) == 1
    # No request ever went to a prefix this etcd does not serve.
    assert all(path == "/version" or path.startswith(source + "/") for _, path in fake.asked)


def test_an_etcd_without_a_version_endpoint_is_read_through_v2(mocker):
    fake = FakeEtcd(mocker, None)
    client = etcd.Client()
    assert [m.name for m in client.member_list(ENDPOINT).members] == ["lab-01"]
    assert [m.name for m in client.member_list(ENDPOINT).members] == ["lab-01"]
    assert fake.asked.count(("GET", "/version")) == 1 and ("GET", "/v2/members") in fake.asked
    assert not [p for _, p in fake.asked if p.startswith("/v3")]


def test_a_404_on_the_remembered_prefix_asks_the_version_again(mocker):
    # A node rebuilt at the same address with a newer etcd: 3.3's /v3beta is gone in 3.5.
    fake = FakeEtcd(mocker, "3.3.27")
    client = etcd.Client()
    assert client.member_list(ENDPOINT).source == "/v3beta/cluster/member/list"
    fake.version = "3.5.9"
    assert client.member_list(ENDPOINT).source == "/v3/cluster/member/list"
    assert fake.asked.count(("GET", "/version")) == 2


def test_a_failing_version_endpoint_is_an_error_with_quoted_text(mocker):
    mocker.patch("requests.Session.request", return_value=_resp(503, {"error": "down\n\x1b[31m"}))
    with pytest.raises(EtcdError, match=r"answered HTTP 503 for /version: 'down\\n\\x1b\[31m'"):
        etcd.Client().member_list(ENDPOINT)


def test_one_session_serves_every_call_of_the_run(mocker):
    FakeEtcd(mocker, "3.4.23")
    client = etcd.Client()
    session = client.session
    client.member_list(ENDPOINT)
    client.healthy(ENDPOINT)
    assert client.session is session
    # Another run (another trust setting) has its own session: no connection verified otherwise is reused.
    assert etcd.Client().session is not session


def test_a_run_carries_its_own_etcd_client_trusting_its_cluster_files_ca(tmp_path):
    from vmcoreos.cluster.members import Members
    from vmcoreos.clusterfile import parse_cluster

    (tmp_path / "ca.pem").write_text("not read here")
    with_ca = Members(parse_cluster({"cluster": "lab", "etcd": {"ca_file": "ca.pem"}}, base_dir=tmp_path))
    without = Members(parse_cluster({"cluster": "lab"}, base_dir=tmp_path))
    assert with_ca.client.verify == str(tmp_path / "ca.pem") and without.client.verify is True
    assert with_ca.client.session is not without.client.session
    assert not hasattr(etcd, "use_ca") and not hasattr(etcd.client, "default_client")  # nothing module-wide


def test_an_etcd_that_trickles_its_reply_is_cut_at_the_request_limit(monkeypatch):
    # One byte a second, inside the 5 s read timeout: only a deadline that cuts the blocked read ends it.
    import time as _time

    from tests.harness.silentpeer import SilentPeer
    from vmcoreos.errors import EtcdError
    from vmcoreos.etcd import client as etcd_client

    monkeypatch.setattr(etcd_client, "REQUEST_LIMIT", 2.0)
    with SilentPeer(trickle=1.0, prefix=b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{") as peer:
        c = etcd_client.Client()
        try:
            started = _time.monotonic()
            with pytest.raises(EtcdError, match=rf"etcd at http://127.0.0.1:{peer.port}/version did not answer within 2s"):
                c.request("GET", f"http://127.0.0.1:{peer.port}/version")
            assert _time.monotonic() - started < 8
        finally:
            c.close()
