"""The etcd lock speaks the gateway prefix each member's etcd serves, and passes over an endpoint answering 404."""

from __future__ import annotations

import pytest

from tests.harness.fake_etcd import FakeEtcd
from vmcoreos import etcd


@pytest.mark.parametrize("version, prefix", [("3.3.27", "/v3beta"), ("3.2.32", "/v3alpha"), ("3.5.21", "/v3")])
def test_the_lock_uses_the_prefix_of_the_members_etcd(version, prefix):
    with FakeEtcd(version) as fake:
        lock = etcd.EtcdLock(etcd.Client(), [fake.endpoint], "lab", "host:1")
        assert lock.acquire() is True
        try:
            assert fake.holder("/vmcoreos/lock/lab") == "host:1"
            assert lock.holder_of() == "host:1"
        finally:
            lock.release()
        posts = [p for p in fake.paths if p != "/version"]
        assert posts and all(p.startswith(prefix + "/") for p in posts), posts


def test_a_first_endpoint_answering_404_passes_the_lock_to_the_next():
    with FakeEtcd(None) as stranger, FakeEtcd("3.3.27") as member:
        lock = etcd.EtcdLock(etcd.Client(), [stranger.endpoint, member.endpoint], "lab", "host:1")
        assert lock.acquire() is True
        lock.release()
        assert lock.endpoint == member.endpoint  # the one that answered is asked first from then on
        assert member.holder("/vmcoreos/lock/lab") == "host:1"


def test_no_endpoint_with_the_v3_api_is_the_only_fallback():
    with FakeEtcd(None) as stranger:
        with pytest.raises(FileNotFoundError):
            etcd.EtcdLock(etcd.Client(), [stranger.endpoint], "lab", "host:1").acquire()
