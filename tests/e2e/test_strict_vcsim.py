"""The strict simulator profile behaves as a real vCenter 7/8 with ESXi hosts.

Each test talks pyvmomi straight to `build/vcsim -strict` (or `-esx`) and shows
one behaviour where the plain simulator is lenient (coreos-facts §8).
"""

from __future__ import annotations

import hashlib
import re
import ssl
import time

import pytest

from tests.e2e.direct import BedInventory, clone_spec, destroy, import_spec, pinned_context, put, ready_lease, strict_pyvmomi_bed, THUMBPRINT, wait
from tests.harness.guestsim import DOCKER0, FIRST_NIC_ID, flannel_address, link_local, tools_reports
from tests.harness.services import GuestSim, Vcsim

pytestmark = pytest.mark.e2e  # every test starts build/vcsim

MiB = 1 << 20


@pytest.fixture(scope="module")
def strict_bed(tmp_path_factory):
    yield from strict_pyvmomi_bed(tmp_path_factory.mktemp("strict-vcsim"))


@pytest.fixture(scope="module")
def strict(strict_bed):
    return strict_bed[0]


@pytest.fixture(scope="module")
def si(strict_bed):
    return strict_bed[1]


@pytest.fixture(scope="module")
def inv(si):
    return BedInventory(si)


# -- 1. NFC on a separate host with its own certificate ----------------------

def test_lease_points_at_a_host_with_its_own_certificate(strict, inv):
    lease = ready_lease(inv, "strict-nfc")
    try:
        (device,) = [d for d in lease.info.deviceUrl if d.disk]
        host, port = strict.host_port
        assert device.url.startswith(f"https://{strict.nfc_host}/nfc/")
        assert strict.nfc_host != f"{host}:{port}"
        assert THUMBPRINT.fullmatch(device.sslThumbprint)
        assert device.sslThumbprint == strict.nfc_thumbprint != strict.thumbprint
        der = ssl.PEM_cert_to_DER_cert(strict.nfc_cert.read_text())
        assert ":".join(re.findall("..", hashlib.sha1(der).hexdigest().upper())) == device.sslThumbprint

        # Verified against the vCenter's certificate, the host is refused...
        with pytest.raises(ssl.SSLCertVerificationError):
            put(device.url, b"x" * 4096, ssl.create_default_context(cafile=str(strict.cert)))
        # ...and the vCenter itself serves no NFC.
        vc_url = device.url.replace(strict.nfc_host, f"{host}:{port}")
        assert put(vc_url, b"x", ssl.create_default_context(cafile=str(strict.cert))) == 404
        # Pinned to the lease's thumbprint (which came over the verified vCenter session), it works.
        assert put(device.url, b"x" * 4096, pinned_context(), pin=device.sslThumbprint) == 200
        lease.HttpNfcLeaseComplete()
    finally:
        vm = inv.content.searchIndex.FindChild(inv.dc.vmFolder, "strict-nfc")
        if vm is not None:
            destroy(vm)


def test_nfc_host_can_be_reached_through_a_fault_proxy(tmp_path):
    from tests.harness.faultproxy import FaultProxy
    from tests.harness.services import free_port

    port = free_port()
    for sim, si in strict_pyvmomi_bed(tmp_path / "vcsim", nfc_advertise=f"127.0.0.1:{port}"):
        nfc_host, nfc_port = sim.nfc_listen.rsplit(":", 1)
        with FaultProxy(upstream=(nfc_host, int(nfc_port)), listen=("127.0.0.1", port)) as proxy:
            inv = BedInventory(si)
            lease = ready_lease(inv, "strict-proxied")
            try:
                (device,) = [d for d in lease.info.deviceUrl if d.disk]
                assert sim.nfc_host == f"127.0.0.1:{port}" != sim.nfc_listen
                assert device.url.startswith(f"https://127.0.0.1:{port}/nfc/")
                proxy.reset_after(1 << 20, direction="up")
                with pytest.raises((ConnectionError, ssl.SSLError)):
                    put(device.url, b"p" * (2 << 20), pinned_context(), pin=device.sslThumbprint)
                assert put(device.url, b"p" * (2 << 20), pinned_context(), pin=device.sslThumbprint) == 200
                assert proxy.stats.resets == 1
                lease.HttpNfcLeaseComplete()
            finally:
                destroy(inv.content.searchIndex.FindChild(inv.dc.vmFolder, "strict-proxied"))


# -- 2. DRS off: a host is needed ---------------------------------------------

def test_default_cluster_has_drs_off(inv):
    assert inv.cluster.configurationEx.drsConfig.enabled is False


def test_clone_without_host_is_refused_on_a_cluster_without_drs(inv):
    from pyVmomi import vim, vmodl

    with pytest.raises(vmodl.fault.InvalidArgument) as raised:
        wait(inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="strict-nohost", spec=clone_spec(inv, host=False)))
    assert raised.value.invalidProperty == "spec.location.host"
    clone = wait(inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="strict-host", spec=clone_spec(inv)))
    try:
        assert clone.runtime.host == inv.host
    finally:
        destroy(clone)


def test_import_without_host_is_refused_on_a_cluster_without_drs(inv):
    from pyVmomi import vim, vmodl

    with pytest.raises(vmodl.fault.InvalidArgument) as raised:
        inv.cluster.resourcePool.ImportVApp(import_spec(inv, "strict-import-nohost"), folder=inv.dc.vmFolder)
    assert raised.value.invalidProperty == "host"
    assert inv.content.searchIndex.FindChild(inv.dc.vmFolder, "strict-import-nohost") is None
    lease = ready_lease(inv, "strict-import-host")
    lease.HttpNfcLeaseAbort()
    destroy(inv.content.searchIndex.FindChild(inv.dc.vmFolder, "strict-import-host"))


def test_with_drs_on_no_host_is_needed(inv):
    from pyVmomi import vim, vmodl

    spec = vim.cluster.ConfigSpecEx(drsConfig=vim.cluster.DrsConfigInfo(enabled=True))
    wait(inv.cluster.ReconfigureComputeResource_Task(spec, modify=True))
    try:
        clone = wait(inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="strict-drs", spec=clone_spec(inv, host=False)))
        destroy(clone)
    finally:
        spec = vim.cluster.ConfigSpecEx(drsConfig=vim.cluster.DrsConfigInfo(enabled=False))
        wait(inv.cluster.ReconfigureComputeResource_Task(spec, modify=True))


# -- 3. A standalone ESXi cannot clone -----------------------------------------

def test_standalone_esxi_refuses_clone(tmp_path):
    from pyVim.connect import Disconnect
    from pyVmomi import vim, vmodl

    sim = Vcsim(tmp_path / "esx", esx=True)
    try:
        si = sim.start().connect()
        try:
            content = si.RetrieveContent()
            assert content.about.apiType == "HostAgent"
            view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
            vm = view.view[0]
            with pytest.raises(vmodl.fault.NotSupported):
                vm.CloneVM_Task(folder=vm.parent, name="esx-clone", spec=vim.vm.CloneSpec(
                    location=vim.vm.RelocateSpec(pool=vm.resourcePool)))
        finally:
            Disconnect(si)
    finally:
        sim.stop()


# -- 4. Names of 80+ characters, memory not a multiple of 4 ---------------------

def test_long_names_are_refused(inv):
    from pyVmomi import vim, vmodl

    with pytest.raises(vim.fault.InvalidName):
        inv.dc.vmFolder.CreateFolder("f" * 80)
    folder = inv.dc.vmFolder.CreateFolder("f" * 79)
    wait(folder.Destroy_Task())
    with pytest.raises(vim.fault.InvalidName):
        wait(inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="c" * 80, spec=clone_spec(inv)))
    with pytest.raises(vim.fault.InvalidName):
        inv.cluster.resourcePool.ImportVApp(import_spec(inv, "i" * 80), folder=inv.dc.vmFolder, host=inv.host)


def test_memory_must_be_a_multiple_of_4(inv):
    from pyVmomi import vim, vmodl

    with pytest.raises(vmodl.fault.InvalidArgument):
        wait(inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="strict-mem", spec=clone_spec(inv, memoryMB=1001)))
    with pytest.raises(vmodl.fault.InvalidArgument):
        wait(inv.vm.ReconfigVM_Task(vim.vm.ConfigSpec(memoryMB=1001)))
    with pytest.raises(vmodl.fault.InvalidArgument):
        inv.cluster.resourcePool.ImportVApp(import_spec(inv, "strict-mem-import", memory_mb=1001),
                                            folder=inv.dc.vmFolder, host=inv.host)
    clone = wait(inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="strict-mem",
                                     spec=clone_spec(inv, memoryMB=1028, numCPUs=3)))
    try:
        # The clone gets what its spec asks for, as on vCenter.
        assert (clone.config.hardware.memoryMB, clone.config.hardware.numCPU) == (1028, 3)
    finally:
        destroy(clone)


# -- 5. Thin disks: free space falls by bytes written ---------------------------

def test_thin_disks_use_what_is_written(inv):
    from pyVmomi import vim, vmodl

    def free() -> int:
        return inv.datastore.summary.freeSpace

    before = free()
    lease = ready_lease(inv, "strict-thin")
    template = inv.content.searchIndex.FindChild(inv.dc.vmFolder, "strict-thin")
    clone = None
    try:
        capacity = sum(d.capacityInKB * 1024 for d in template.config.hardware.device
                       if isinstance(d, vim.vm.device.VirtualDisk))
        assert capacity >= 1 << 30
        assert free() == before  # an empty thin disk takes nothing
        (device,) = [d for d in lease.info.deviceUrl if d.disk]
        written = 3 * MiB + 17
        assert put(device.url, b"v" * written, pinned_context(), pin=device.sslThumbprint) == 200
        lease.HttpNfcLeaseComplete()
        assert free() == before - written
        assert template.summary.storage.committed >= written
        clone = wait(template.CloneVM_Task(folder=inv.dc.vmFolder, name="strict-thin-clone", spec=clone_spec(inv)))
        assert free() == before - 2 * written  # a full clone copies the written blocks only
        destroy(clone)
        clone = None
        assert free() == before - written
    finally:
        if clone is not None:
            destroy(clone)
        destroy(template)
    assert free() == before


# -- 6. Two port groups of one name ---------------------------------------------

def test_two_port_groups_share_a_name_on_two_switches(inv):
    from pyVmomi import vim, vmodl

    # By moref: the simulator lists the first switch's port group twice in datacenter.network.
    twins = list({n._moId: n for n in inv.dc.network if n.name == "DC0_DVPG0"}.values())
    assert len(twins) == 2
    assert all(isinstance(n, vim.dvs.DistributedVirtualPortgroup) for n in twins)
    assert len({n.config.distributedVirtualSwitch for n in twins}) == 2
    assert all(n.host for n in twins)


# -- 7. Guest tools report fe80:: first, then several addresses ----------------

def test_tools_reports_sequence():
    mac = "00:50:56:aa:bb:cc"
    first, overlay, final = tools_reports("127.1.2.3", mac, "VM Network", 1.0, 3.0)
    assert first.ip == link_local(mac) == "fe80::250:56ff:feaa:bbcc"
    assert [n["ipAddress"] for n in first.net] == [[first.ip]]
    assert overlay.ip == flannel_address("127.1.2.3") == "10.1.3.0"
    assert [n["deviceConfigId"] for n in overlay.net] == [FIRST_NIC_ID, -1, -1]
    assert overlay.net[0]["ipAddress"][0] == "127.1.2.3"
    assert overlay.net[1]["ipAddress"] == [DOCKER0]
    assert final.ip == "127.1.2.3" and final.net == overlay.net
    # No address yet (DHCP failed): only the link-local one, for good.
    assert [r.ip for r in tools_reports(None, mac, "", 1.0, 3.0)] == [link_local(mac)]


def test_guest_reports_link_local_then_overlay_then_node_address(tmp_path, subnet):
    import base64

    from pyVim.connect import Disconnect
    from pyVmomi import vim, vmodl

    sim = Vcsim(tmp_path / "vcsim", strict=True).start()
    guests = GuestSim(sim, tmp_path / "guestsim", dhcp_range=f"{subnet}.100-{subnet}.199", strict=True)
    si = None
    try:
        guests.start()
        si = sim.connect()
        inv = BedInventory(si)
        config = base64.b64encode(b"#cloud-config\nhostname: strict-guest\n").decode()
        extra = [vim.option.OptionValue(key="guestinfo.coreos.config.data", value=config),
                 vim.option.OptionValue(key="guestinfo.coreos.config.data.encoding", value="base64")]
        vm = wait(inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="strict-guest",
                                      spec=clone_spec(inv, extraConfig=extra)))
        wait(vm.PowerOnVM_Task())
        seen: list[tuple[str, tuple]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            guest = vm.guest
            ip = guest.ipAddress or ""
            nets = tuple((n.deviceConfigId, tuple(n.ipAddress)) for n in guest.net or [])
            if ip and (not seen or seen[-1] != (ip, nets)):
                seen.append((ip, nets))
            if ip.startswith(subnet + "."):
                break
            time.sleep(0.1)
        node_ip = guests.node("strict-guest")["ip"]
        assert node_ip.startswith(subnet + ".")
        ips = [ip for ip, _ in seen]
        assert ips[0].startswith("fe80::")
        assert flannel_address(node_ip) in ips
        assert ips[-1] == node_ip
        final = dict(seen[-1][1])
        assert final[FIRST_NIC_ID][0] == node_ip
        assert any(DOCKER0 in addresses for dev, addresses in seen[-1][1] if dev == -1)
        wait(vm.PowerOffVM_Task())
        destroy(vm)
    finally:
        if si is not None:
            Disconnect(si)
        guests.stop()
        sim.stop()


# -- real timings: slow tasks and leases ------------------------------------------------

DELAY = 1.5


@pytest.fixture(scope="module")
def slow_inv(tmp_path_factory):
    for _, si in strict_pyvmomi_bed(tmp_path_factory.mktemp("slow-vcsim"), drs=True, task_delay=DELAY, lease_timeout=2,
                               destroy_delay=DELAY):
        yield BedInventory(si)


def test_drs_flag_keeps_drs_on(slow_inv):
    assert slow_inv.cluster.configurationEx.drsConfig.enabled is True


def test_slow_clone_registers_its_vm_only_at_the_end(slow_inv):
    from pyVmomi import vim

    inv = slow_inv
    start = time.monotonic()
    task = inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="slow-clone", spec=clone_spec(inv))
    info = task.info
    assert info.state == "running" and info.cancelable
    # As on vCenter, so a client that lost its connection can find the task it started.
    assert (info.descriptionId, info.entity, info.entityName) == ("VirtualMachine.clone", inv.vm, inv.vm.name)
    assert task in inv.vm.recentTask
    # The new VM's name is only in the clone's event, which the task names by its chain.
    spec = vim.event.EventFilterSpec(eventTypeId=["VmBeingClonedEvent"],
                                     entity=vim.event.EventFilterSpec.ByEntity(entity=inv.vm, recursion="self"))
    chain = [e for e in inv.content.eventManager.QueryEvents(spec) if e.chainId == info.eventChainId]
    assert info.eventChainId and [(e.destName, e.destFolder.folder) for e in chain] == [("slow-clone", inv.dc.vmFolder)]
    assert inv.content.searchIndex.FindChild(inv.dc.vmFolder, "slow-clone") is None
    clone = wait(task)
    try:
        assert time.monotonic() - start >= DELAY
        assert clone.name == "slow-clone"
    finally:
        destroy(clone)


def test_cancel_task_stops_a_running_clone(slow_inv):
    from pyVmomi import vim, vmodl

    inv = slow_inv
    task = inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="slow-canceled", spec=clone_spec(inv))
    task.CancelTask()
    with pytest.raises(vmodl.fault.RequestCanceled):
        wait(task)
    time.sleep(DELAY + 0.5)
    assert inv.content.searchIndex.FindChild(inv.dc.vmFolder, "slow-canceled") is None
    with pytest.raises(vim.fault.InvalidState):
        task.CancelTask()  # finished tasks cannot be canceled


def test_a_slow_destroy_cannot_be_canceled_and_removes_the_vm_at_its_end(slow_inv):
    from pyVmomi import vmodl

    inv = slow_inv
    vm = wait(inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="slow-destroyed", spec=clone_spec(inv)))
    task = vm.Destroy_Task()
    assert (task.info.state, task.info.descriptionId) == ("running", "VirtualMachine.destroy")
    with pytest.raises(vmodl.fault.NotSupported):
        task.CancelTask()  # as on vCenter: a deletion, once started, runs to its end
    assert inv.content.searchIndex.FindChild(inv.dc.vmFolder, "slow-destroyed") is not None
    wait(task)
    assert inv.content.searchIndex.FindChild(inv.dc.vmFolder, "slow-destroyed") is None


def test_import_lease_initializes_for_the_delay(slow_inv):
    from pyVmomi import vim

    inv = slow_inv
    lease = inv.cluster.resourcePool.ImportVApp(import_spec(inv, "slow-import"), folder=inv.dc.vmFolder)
    try:
        assert lease.state == "initializing"
        deadline = time.monotonic() + DELAY + 5
        while lease.state == "initializing" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lease.state == "ready"
        # Kept alive by progress calls...
        for _ in range(10):
            lease.HttpNfcLeaseProgress(10)
            time.sleep(0.3)
        assert lease.state == "ready"
        # ...and lost without them, as after vCenter's 300 s.
        time.sleep(3)
        assert lease.state == "error"
        assert isinstance(lease.error, vim.fault.Timedout)
    finally:
        destroy(inv.content.searchIndex.FindChild(inv.dc.vmFolder, "slow-import"))


def test_idle_sessions_expire(tmp_path):
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    sim = Vcsim(tmp_path / "vcsim", session_idle=1).start()
    try:
        idle, busy = sim.connect(), sim.connect()
        try:
            for _ in range(12):
                busy.CurrentTime()
                time.sleep(0.25)
            busy.RetrieveContent().sessionManager.currentSession  # still logged in after 3 s of use
            with pytest.raises(vim.fault.NotAuthenticated):
                idle.RetrieveContent().sessionManager.currentSession.key
                idle.RetrieveContent().rootFolder.childEntity
        finally:
            for si in (idle, busy):
                try:
                    Disconnect(si)
                except Exception:
                    pass
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def stepping_inv(tmp_path_factory):
    for _, si in strict_pyvmomi_bed(tmp_path_factory.mktemp("stepping-vcsim"), drs=True, task_delay=DELAY,
                               task_progress_steps=5):
        yield BedInventory(si)


def test_slow_clone_reports_progress_in_steps_as_vcenter_does(stepping_inv, slow_inv):
    inv = stepping_inv
    task = inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="stepping-clone", spec=clone_spec(inv))
    seen = []
    while task.info.state in ("queued", "running"):
        if task.info.progress and task.info.progress not in seen:
            seen.append(task.info.progress)
        time.sleep(0.05)
    destroy(wait(task))
    assert seen == [20, 40, 60, 80]
    # Without steps a slow task reports none, as one queued on its host does.
    quiet = slow_inv.vm.CloneVM_Task(folder=slow_inv.dc.vmFolder, name="quiet-clone", spec=clone_spec(slow_inv))
    progress = {quiet.info.progress for _ in range(5) if not time.sleep(0.2)}
    destroy(wait(quiet))
    assert progress <= {0, None}


# -- the bed itself --------------------------------------------------------------

@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_stop_does_not_wait_out_a_long_poll_in_flight(tmp_path, strict):
    # A guest simulator stopped mid-WaitForUpdatesEx leaves that request running in vcsim; a stop that
    # waited for it cost the rest of its maxWait (about 5 s) on every test with a guest simulator.
    import threading

    from pyVmomi import vim

    sim = Vcsim(tmp_path / "vcsim", strict=strict).start()
    try:
        si = sim.connect()
        content = si.RetrieveContent()
        pc = content.propertyCollector
        spec = vim.PropertyFilterSpec(
            objectSet=[vim.ObjectSpec(obj=content.rootFolder)],
            propSet=[vim.PropertySpec(type=vim.Folder, pathSet=["name"])])
        pc.CreateFilter(spec, partialUpdates=False)
        version = pc.WaitForUpdatesEx("", vim.WaitOptions(maxWaitSeconds=0)).version
        polling = threading.Event()

        def poll():
            polling.set()
            try:
                pc.WaitForUpdatesEx(version, vim.WaitOptions(maxWaitSeconds=30))
            except Exception:
                pass  # the simulator went away under it, as intended

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        polling.wait(5)
        time.sleep(0.5)  # the request is in vcsim's hands
    finally:
        started = time.monotonic()
        sim.stop()
        took = time.monotonic() - started
    poller.join(10)
    assert sim.proc.returncode == 0  # it exited on SIGTERM, not by the kill after stop_process's 10 s
    assert took < 2, f"vcsim took {took:.1f}s to stop"


def test_each_simulator_is_a_vcenter_of_its_own(tmp_path):
    # Upstream vcsim draws a random instanceUuid into a copy of the service content, so every simulator
    # said dbed6e0c-…: what vmcoreos records per vCenter (state/templates.json) carried over from one
    # test's simulator to the next, whose VMs repeat the same morefs and UUIDs.
    import uuid

    from pyVim.connect import Disconnect

    ids = []
    for n, strict in enumerate((True, True, False)):
        sim = Vcsim(tmp_path / f"vcsim{n}", strict=strict).start()
        try:
            si = sim.connect()
            ids.append(si.RetrieveContent().about.instanceUuid)
            Disconnect(si)
        finally:
            sim.stop()
    assert len(set(ids)) == 3, ids
    assert all(str(uuid.UUID(i)) == i for i in ids)
