"""The vCenter session against the real simulator: expiry, stalls and dropped connections."""

from __future__ import annotations

import time

import pytest
from pyVmomi import vim

from tests.harness.faultproxy import FaultProxy
from vmcoreos.errors import VSphereError
from vmcoreos.settings import connection_from
from vmcoreos.vsphere import session as vsession


def _settled(proxy):
    """The proxy's per-connection counters once traffic has stopped (they trail the sockets a little)."""
    last = None
    while True:
        conns = proxy.stats.conns
        now = [(c.index, c.bytes_up, c.bytes_down) for c in conns]
        if now == last:
            return conns
        last = now
        time.sleep(0.1)


@pytest.fixture
def vcsim(shared_vcsim):
    # These tests only read the inventory; each kills or stalls only its own session.
    return shared_vcsim


def _conn(vcsim, url=None):
    return connection_from(url=url or vcsim.url, environ=vcsim.env())


def test_expired_session_is_reestablished_once_transparently(vcsim):
    s = vsession.connect(_conn(vcsim))
    try:
        key = s.content.sessionManager.currentSession.key
        admin = vcsim.connect()
        admin.content.sessionManager.TerminateSession([key])
        # The next call meets NotAuthenticated, logs in again and succeeds.
        dcs = s.retrieve_all(s.content.rootFolder, vim.Datacenter, ["name"])
        assert [p["name"] for p in dcs.values()] == ["DC0"]
        assert s.content.sessionManager.currentSession.key != key
    finally:
        s.close()


def test_dropped_connection_during_a_read_is_resent(vcsim):
    with FaultProxy.for_url(vcsim.url) as proxy:
        s = vsession.connect(_conn(vcsim, proxy.url_for(vcsim.url)))
        try:
            root = s.content.rootFolder
            before = proxy.stats.connections
            # Cut the next answer 100 bytes in, on whichever connection pyvmomi's pool picks.
            conns = _settled(proxy)
            for c in conns:
                proxy.reset_after(c.bytes_down + 100, direction="down", conn=c.index)
            dcs = s.retrieve_all(root, vim.Datacenter, ["name"])
            assert [p["name"] for p in dcs.values()] == ["DC0"]
            assert proxy.stats.resets == 1 and proxy.stats.connections > before
        finally:
            proxy.clear()
            s.close()


def test_stalled_vcenter_times_out_naming_the_call(vcsim, monkeypatch):
    monkeypatch.setenv(vsession.ENV_API_TIMEOUT, "2")
    with FaultProxy.for_url(vcsim.url) as proxy:
        s = vsession.connect(_conn(vcsim, proxy.url_for(vcsim.url)))
        try:
            root = s.content.rootFolder
            # Stall the next answer on whichever connection pyvmomi's pool picks, old or new.
            conns = _settled(proxy)
            for c in conns:
                proxy.stall(30, after_bytes=c.bytes_down, direction="down", conn=c.index)
            proxy.stall(30, direction="down", conn=lambda c, n=len(conns): c.index >= n)
            started = time.monotonic()
            with pytest.raises(VSphereError, match=r"did not answer (CreateContainerView|RetrievePropertiesEx) within 2s"):
                s.retrieve_all(root, vim.Datacenter, ["name"])
            assert time.monotonic() - started < 10
        finally:
            proxy.clear()
            s.close()
