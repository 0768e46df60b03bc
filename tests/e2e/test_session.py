"""The vCenter session against the real simulator: expiry, stalls and dropped connections."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from pyVim.connect import Disconnect
from pyVim.task import WaitForTask
from pyVmomi import vim

from tests.e2e.helpers import api_vm
from tests.harness.faultproxy import FaultProxy
from vmcoreos.errors import VSphereError
from vmcoreos.connection import connection_from
from vmcoreos.vsphere import session as vsession
from vmcoreos.vsphere.waits import Watch, wait_task


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


# -- re-login, stale pooled sockets ------------------------------------------------------

def _our_sessions(admin) -> list:
    """The simulator's live sessions vmcoreos opened (its User-Agent), as a vCenter's session list shows them."""
    return [u for u in admin.content.sessionManager.sessionList if (u.userAgent or "").startswith("vmcoreos/")]


def test_parallel_calls_after_expiry_share_one_login(vcsim, monkeypatch):
    from pyVmomi import SoapAdapter

    invoke = SoapAdapter.SoapStubAdapter.InvokeMethod
    logins = []

    def slow_login(self, mo, info, args, outerStub=None):
        # A vCenter that takes its time to log in: every thread whose call failed meanwhile would log in too.
        if info.wsdlName == "Login":
            logins.append(threading.current_thread().name)
            time.sleep(0.3)
        return invoke(self, mo, info, args, outerStub)

    admin = vcsim.connect()
    monkeypatch.setattr(SoapAdapter.SoapStubAdapter, "InvokeMethod", slow_login)
    s = vsession.connect(_conn(vcsim))
    try:
        root = s.content.rootFolder
        assert len(logins) == 1 and len(_our_sessions(admin)) == 1
        admin.content.sessionManager.TerminateSession([s.content.sessionManager.currentSession.key])
        threads = 8
        start = threading.Barrier(threads)

        def read(_):
            start.wait()
            # Not a plain RetrievePropertiesEx: the simulator answers that one without a session.
            return [p["name"] for p in s.retrieve_all(root, vim.Datacenter, ["name"]).values()]

        with ThreadPoolExecutor(threads) as pool:
            assert list(pool.map(read, range(threads))) == [["DC0"]] * threads
        assert len(logins) == 2 and s.generation == 1
        assert len(_our_sessions(admin)) == 1  # nothing left behind for vCenter to hold until it times out
    finally:
        s.close()
        Disconnect(admin)


def test_a_wait_outlives_the_session_its_filter_was_made_in(vcsim):
    s = vsession.connect(_conn(vcsim))
    admin = vcsim.connect()
    try:
        vm = next(ref for ref, p in s.retrieve_all(s.content.rootFolder, vim.VirtualMachine, ["name"]).items()
                  if p["name"] == "DC0_H0_VM1")
        note = f"watched {time.monotonic()}"
        deadline = time.monotonic() + 30
        with Watch(s, [vm], ["name", "config.annotation"], vim.VirtualMachine) as watch:
            watch.until(lambda v: "name" in v[vm], deadline, "first update")
            old_pc = watch.pc
            admin.content.sessionManager.TerminateSession([s.content.sessionManager.currentSession.key])
            # The change comes after the session (and the collector with it) is gone.
            with api_vm(vcsim, "DC0_H0_VM1") as other:
                WaitForTask(other.ReconfigVM_Task(vim.vm.ConfigSpec(annotation=note)))
            watch.until(lambda v: v[vm].get("config.annotation") == note, deadline, "the note")
            assert watch.pc != old_pc and s.generation == 1
    finally:
        s.close()
        Disconnect(admin)


def test_a_listing_outlives_a_session_that_ends_between_its_view_and_its_read(vcsim, monkeypatch):
    s = vsession.connect(_conn(vcsim))
    admin = vcsim.connect()
    try:
        root = s.content.rootFolder
        key = s.content.sessionManager.currentSession.key
        stub = s.si._stub
        guarded = stub.InvokeMethod
        ended = []

        def end_after_view(mo, info, args, outerStub=None):
            result = guarded(mo, info, args, outerStub)
            if info.wsdlName == "CreateContainerView" and not ended:
                ended.append(admin.content.sessionManager.TerminateSession([key]))
            return result

        monkeypatch.setattr(stub, "InvokeMethod", end_after_view)
        dcs = s.retrieve_all(root, vim.Datacenter, ["name"])
        assert [p["name"] for p in dcs.values()] == ["DC0"] and ended and s.generation == 1
    finally:
        s.close()
        Disconnect(admin)


def test_a_pooled_socket_cut_while_idle_is_not_used_for_a_reconfigure(vcsim):
    note = f"after an idle cut {time.monotonic()}"
    with FaultProxy.for_url(vcsim.url) as proxy:
        s = vsession.connect(_conn(vcsim, proxy.url_for(vcsim.url)))
        try:
            vm = next(ref for ref, p in s.retrieve_all(s.content.rootFolder, vim.VirtualMachine, ["name"]).items()
                      if p["name"] == "DC0_H0_VM1")
            # What a load balancer does to a keep-alive socket while the tool waits on etcd.
            assert proxy.reset_idle(0) >= 1
            before = proxy.stats.connections
            task = vm.ReconfigVM_Task(vim.vm.ConfigSpec(annotation=note))  # not idempotent: never resent
            wait_task(s, task, timeout=30)
            assert s.retrieve([vm], ["config.annotation"], vim.VirtualMachine)[vm]["config.annotation"] == note
            assert proxy.stats.connections > before and proxy.stats.idle_resets >= 1
        finally:
            s.close()


def test_pooled_sockets_idle_past_the_pool_limit_are_not_reused(vcsim, monkeypatch):
    # A cut that sends nothing (a silent load balancer) cannot be seen on the socket: age is the only tell.
    monkeypatch.setattr(vsession, "POOL_IDLE_SECONDS", 1, raising=False)
    with FaultProxy.for_url(vcsim.url) as proxy:
        s = vsession.connect(_conn(vcsim, proxy.url_for(vcsim.url)))
        try:
            s.si.CurrentTime()
            before = proxy.stats.connections
            s.si.CurrentTime()
            assert proxy.stats.connections == before  # reused while fresh
            time.sleep(1.5)
            s.si.CurrentTime()
            assert proxy.stats.connections == before + 1
        finally:
            s.close()


def _vmcoreos_logins(sim) -> int:
    """Logins of vmcoreos (its User-Agent) in the simulator's event log, as vCenter's Events tab lists them."""
    admin = sim.connect()
    try:
        spec = vim.event.EventFilterSpec(eventTypeId=["UserLoginSessionEvent"], maxCount=1000)
        events = admin.content.eventManager.QueryEvents(spec)
        return sum(1 for e in events if (e.userAgent or "").startswith("vmcoreos/"))
    finally:
        Disconnect(admin)


def test_a_session_that_expires_mid_deploy_costs_one_login(cli, signed_ova, subnet, tmp_path):
    from tests.e2e.helpers import write_cluster
    from tests.harness.services import GuestSim, Vcsim

    # Sessions idle IDLE s expire. The guests take BOOT s to show their addresses, which the deploy
    # awaits in one long poll, so its session ends while its wait's filter is open; every other
    # gap (the guest simulator polls every 5 s, the tool's keepalive every 2 s) is shorter.
    IDLE, BOOT = 8, 18
    sim = Vcsim(tmp_path / "vcsim", strict=True, drs=True, session_idle=IDLE).start()
    guests = None
    try:
        bundle = sim.workdir / "ca-bundle.pem"
        bundle.write_text(sim.cert.read_text() + sim.nfc_cert.read_text())
        guests = GuestSim(sim, tmp_path / "guestsim", dhcp_range=f"{subnet}.100-{subnet}.199", strict=True,
                          boot_delay=BOOT).start()
        cluster = write_cluster(tmp_path / "cluster.yaml", subnet, extra={"wait": {"timeout": 90}})
        started = time.monotonic()
        run = cli(["deploy", "-c", str(cluster), "--count", "3", "--ova", str(signed_ova["ova"]),
                   "--trusted-key", str(signed_ova["key"]), "--json"],
                  env={**sim.env(), "VMCOREOS_CA_FILE": str(bundle)})
        took = time.monotonic() - started
        assert run.returncode == 0, run.stderr
        assert all(n["healthy"] for n in json.loads(run.stdout)["nodes"])
        assert took > BOOT  # the guests really kept it waiting past IDLE
        assert _vmcoreos_logins(sim) == 2  # the first login and one re-login
    finally:
        if guests is not None:
            guests.stop()
        sim.stop()


def test_a_listing_reuses_its_container_view_and_still_sees_what_changed(vcsim):
    # A view per listing cost a CreateContainerView and a DestroyView each (20 of a deploy's requests).
    # vCenter keeps a view's contents current, so the second listing must see a VM made in between.
    s = vsession.connect(_conn(vcsim))
    admin = vcsim.connect()
    made = None
    try:
        calls = []
        stub = s.si._stub
        guarded = stub.InvokeMethod

        def counting(mo, info, args, outerStub=None):
            calls.append(info.wsdlName)
            return guarded(mo, info, args, outerStub)

        stub.InvokeMethod = counting
        folder = admin.content.rootFolder.childEntity[0].vmFolder
        before = s.retrieve_all(s.content.rootFolder, vim.VirtualMachine, ["name"])
        source = next(ref for ref in admin.content.viewManager.CreateContainerView(
            admin.content.rootFolder, [vim.VirtualMachine], True).view if ref.name == "DC0_H0_VM0")
        WaitForTask(source.CloneVM_Task(folder=folder, name="view-reuse-probe",
                                         spec=vim.vm.CloneSpec(location=vim.vm.RelocateSpec())))
        after = s.retrieve_all(s.content.rootFolder, vim.VirtualMachine, ["name"])
        names = {p["name"] for p in after.values()}
        made = next(ref for ref, p in after.items() if p["name"] == "view-reuse-probe")
        assert "view-reuse-probe" in names and len(after) == len(before) + 1
        assert calls.count("CreateContainerView") == 1 and "DestroyView" not in calls
    finally:
        if made is not None:
            WaitForTask(vim.VirtualMachine(made._moId, admin._stub).Destroy_Task())
        s.close()
        Disconnect(admin)
