"""Where a real vCenter differs from the lenient simulator: each test runs on the strict bed (services.Vcsim(strict=True)).

NFC uploads go to a host with its own certificate, DRS is off, a port group
name exists on two switches, and a standalone ESXi cannot clone.
"""

import contextlib
import dataclasses
from types import SimpleNamespace

import pytest

from tests.e2e.direct import deploy_rv, import_refused, refused_before_upload, session_on, target, import_ova_and_destroy
from tests.harness.services import USER, Vcsim, free_port
from vmcoreos.connection import connection_from
from vmcoreos.errors import ConfigError, ExitCode, VSphereError
from vmcoreos.images.archive.ova import OvaArchive
from vmcoreos.settings import VSphereTarget
from vmcoreos.vsphere import importer, targets, privileges, vms
from vmcoreos.vsphere.waits import wait_task

pytestmark = pytest.mark.e2e  # every test starts build/vcsim


@contextlib.contextmanager
def _sim(workdir, listen: str = "127.0.0.1:0", **options):
    sim = Vcsim(workdir, strict=True, **options)
    try:
        yield sim.start(listen)
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def strict_vcsim(tmp_path_factory):
    """The strict bed as it comes: DRS off in DC0_C0."""
    with _sim(tmp_path_factory.mktemp("strict-vcsim")) as sim:
        yield sim


@pytest.fixture(scope="module")
def drs_vcsim(tmp_path_factory):
    """The strict bed with DRS on, so an upload test fails only on what it tests (TLS), not on the host."""
    with _sim(tmp_path_factory.mktemp("strict-drs-vcsim"), drs=True) as sim:
        yield sim


@pytest.fixture
def session(strict_vcsim):
    s = session_on(strict_vcsim)
    yield s
    s.close()


# -- 1. NFC upload TLS per lease ------------------------------------------------

@pytest.mark.parametrize("trust", ["ca_file", "thumbprint", "insecure"])
def test_upload_trusts_the_host_by_the_lease_whatever_vcenter_is_trusted_by(drs_vcsim, signed_ova, trust):
    # The NFC host's certificate is self-signed, neither the vCenter's CA nor its pin:
    # --ca-file falls back to the lease's sslThumbprint, --thumbprint never applies to the host.
    options = {"ca_file": {"ca_file": drs_vcsim.cert}, "thumbprint": {"thumbprint": drs_vcsim.thumbprint},
               "insecure": {"insecure": True}}[trust]
    s = session_on(drs_vcsim, **options)
    try:
        import_ova_and_destroy(s, signed_ova["ova"], f"rv-tls-{trust}")
    finally:
        s.close()


def test_a_host_that_is_not_the_one_vcenter_vouches_for_is_one_line_and_not_retried(tmp_path, signed_ova):
    # Leases send the upload to the vCenter's own listener: a TLS server whose certificate
    # is not the one the lease's sslThumbprint names (the --thumbprint pin is vCenter's, so it would pass).
    port = free_port()
    where = f"127.0.0.1:{port}"
    with _sim(tmp_path / "vcsim", drs=True, nfc_advertise=where, listen=where) as sim:
        s = session_on(sim, thumbprint=sim.thumbprint)
        try:
            with pytest.raises(VSphereError) as raised:
                import_ova_and_destroy(s, signed_ova["ova"], "rv-tls-wrong-host")
        finally:
            s.close()
    assert raised.value.message.startswith(f"ESXi host {where}'s TLS certificate is not the one vCenter vouches for")
    assert "\n" not in raised.value.message


def test_an_unresolvable_host_is_one_line_and_not_retried(tmp_path, signed_ova):
    with _sim(tmp_path / "vcsim", drs=True, nfc_advertise="esxi-07.invalid:443") as sim:
        message = import_refused(sim, signed_ova["ova"], "rv-dns")
    assert message.startswith("cannot resolve ESXi host esxi-07.invalid:443, where vCenter sends the upload")


def test_a_star_in_the_device_url_is_the_vcenter_host_bracketed_when_ipv6():
    item = SimpleNamespace(deviceId="disk-0", path="disk.vmdk")
    info = SimpleNamespace(deviceUrl=[SimpleNamespace(importKey="disk-0", url="https://*/nfc/52a/disk-0.vmdk",
                                                      sslThumbprint="")])
    session = SimpleNamespace(conn=SimpleNamespace(host="fd00::5", port=443))
    assert importer._device_url(info, item, session) == ("https://[fd00::5]:443/nfc/52a/disk-0.vmdk", None)


# -- 2. Clusters without DRS --------------------------------------------------------

def test_without_drs_a_usable_host_is_chosen_for_import_and_clone(strict_vcsim, session, signed_ova):
    placement = targets.locate(session, target())
    assert placement.host is not None
    with OvaArchive(signed_ova["ova"]) as archive:
        template = importer.import_ova(session, archive, placement, "rv-nodrs-template", {})
    try:
        spec = vms.clone_spec(placement, cpus=1, memory_mb=512, extra={})
        spec.powerOn = False
        clone = wait_task(session, template.CloneVM_Task(folder=placement.folder, name="rv-nodrs-01", spec=spec))
        assert clone.runtime.host == placement.host
        wait_task(session, clone.Destroy_Task())
    finally:
        wait_task(session, template.Destroy_Task())


def test_an_import_vcenter_refuses_is_one_line_not_an_unexpected_fault(session, signed_ova):
    # As the old code did: no host on a cluster without DRS; vCenter's fault must read as a refusal.
    placement = dataclasses.replace(targets.locate(session, target()), host=None)
    with OvaArchive(signed_ova["ova"]) as archive:
        with pytest.raises(VSphereError) as raised:
            importer.import_ova(session, archive, placement, "rv-nohost", {})
    assert raised.value.message.startswith("vCenter refused to import flatcar_production_vmware_ova.ova as rv-nohost:")


def test_vsphere_host_chooses_the_host_and_a_wrong_one_lists_the_cluster_hosts(session):
    placement = targets.locate(session, target(host="DC0_C0_H2"))
    assert placement.host.name == "DC0_C0_H2"
    with pytest.raises(VSphereError) as raised:
        targets.locate(session, target(host="DC0_C0_H9"))
    assert "host 'DC0_C0_H9' (vsphere.host) is not in cluster 'DC0_C0'; found: DC0_C0_H0, DC0_C0_H1, DC0_C0_H2" \
        == raised.value.message


def test_a_host_in_maintenance_mode_is_not_chosen(session):
    host = targets.locate(session, target(host="DC0_C0_H0")).host
    wait_task(session, host.EnterMaintenanceMode_Task(timeout=0))
    try:
        assert targets.locate(session, target()).host.name == "DC0_C0_H1"
        with pytest.raises(VSphereError, match="'DC0_C0_H0' \\(vsphere.host\\) is in maintenance mode"):
            targets.locate(session, target(host="DC0_C0_H0"))
    finally:
        wait_task(session, host.ExitMaintenanceMode_Task(timeout=0))


# -- 3. Standalone ESXi ----------------------------------------------------------------

def test_a_standalone_esxi_is_refused_saying_a_vcenter_is_needed(tmp_path):
    sim = Vcsim(tmp_path / "esx", esx=True)
    try:
        sim.start()
        s = session_on(sim)
        try:
            with pytest.raises(ConfigError) as raised:
                targets.locate(s, VSphereTarget())
        finally:
            s.close()
    finally:
        sim.stop()
    assert raised.value.exit_code == ExitCode.USAGE
    assert "standalone ESXi host, not a vCenter: ESXi alone cannot clone VMs" in raised.value.message


# -- 4. Inventory ambiguity ------------------------------------------------------------

def test_a_port_group_name_on_two_switches_lists_both_and_a_path_chooses(session):
    with pytest.raises(VSphereError) as raised:
        targets.locate(session, target(network="DC0_DVPG0"))
    message = raised.value.message
    assert "network 'DC0_DVPG0' (vsphere.network) resolves to 2 objects" in message
    assert "DVS0/DC0_DVPG0" in message and "DVS1/DC0_DVPG0" in message
    assert "set vsphere.network to one of these paths" in message
    placement = targets.locate(session, target(network="DVS1/DC0_DVPG0"))
    assert placement.network.config.distributedVirtualSwitch.name == "DVS1"
    assert placement.network_name == "DC0_DVPG0"


def test_vsphere_resource_pool_is_a_path_below_the_clusters_root_pool(session):
    from pyVmomi import vim

    root = targets.locate(session, target()).resource_pool
    alloc = vim.ResourceAllocationInfo(limit=-1, reservation=0, expandableReservation=True,
                                       shares=vim.SharesInfo(level="normal", shares=0))
    child = root.CreateResourcePool("rv-team", vim.ResourceConfigSpec(cpuAllocation=alloc, memoryAllocation=alloc))
    try:
        assert targets.locate(session, target(resource_pool="rv-team")).resource_pool == child
        with pytest.raises(VSphereError) as raised:
            targets.locate(session, target(resource_pool="rv-team/none"))
        assert "no 'none' in rv-team; found: none" in raised.value.message
    finally:
        wait_task(session, child.Destroy_Task())


# -- 5. Privileges -------------------------------------------------------------------------

def test_a_missing_privilege_is_named_with_its_object_before_any_upload(tmp_path):
    sim = Vcsim(tmp_path / "deny", strict=True, deny=("VirtualMachine.Config.AdvancedConfig",))
    try:
        sim.start()
        s = session_on(sim)
        try:
            placement = targets.locate(s, target())
            with pytest.raises(ConfigError) as raised:
                privileges.require(s, placement, linked_clone=False)
        finally:
            s.close()
    finally:
        sim.stop()
    assert raised.value.exit_code == ExitCode.USAGE
    assert f"{USER!r} lacks the privilege VirtualMachine.Config.AdvancedConfig on folder the datacenter's VM folder" \
        in raised.value.message


def test_with_every_privilege_granted_the_check_passes_and_asks_for_snapshots_only_for_linked_clones(session):
    placement = targets.locate(session, target())
    privileges.require(session, placement, linked_clone=True)

    def asked(linked: bool) -> set[str]:
        return {n.privilege for _, _, n in privileges.needed(placement, linked_clone=linked)}

    assert asked(True) - asked(False) == {"VirtualMachine.State.CreateSnapshot", "VirtualMachine.Provisioning.MarkAsVM"}
    assert {"Network.Assign", "Datastore.AllocateSpace", "Resource.AssignVMToPool", "VApp.Import"} <= asked(False)


# -- 6. The URL path, IPv6 literals ----------------------------------------------------

def test_the_url_path_is_where_the_sdk_is_asked_for(strict_vcsim):
    with pytest.raises(VSphereError):
        session_on(strict_vcsim, url=strict_vcsim.url.replace("/sdk", "/proxy/sdk"))


def test_an_ipv6_literal_stays_bracketed_in_the_url():
    conn = connection_from(url="https://[fd00::5]:8443/sdk", environ={"VMCOREOS_USERNAME": "u", "VMCOREOS_PASSWORD": "p"})
    assert conn.url == "https://[fd00::5]:8443/sdk" and conn.host == "fd00::5"


# -- The CLI: both refusals come before any upload, as one line with exit 2 ------------------

def test_deploy_to_a_standalone_esxi_exits_2_before_any_upload(cli, tmp_path, signed_ova):
    sim = Vcsim(tmp_path / "esx", esx=True)
    try:
        sim.start()
        line = refused_before_upload(deploy_rv(cli, sim, tmp_path, signed_ova), sim)
    finally:
        sim.stop()
    assert "is a standalone ESXi host, not a vCenter" in line and "point --url at the vCenter" in line


def test_deploy_without_a_privilege_exits_2_naming_it_before_any_upload(cli, tmp_path, signed_ova):
    with _sim(tmp_path / "deny", deny=("VirtualMachine.Provisioning.DeployTemplate",)) as sim:
        line = refused_before_upload(deploy_rv(cli, sim, tmp_path, signed_ova), sim)
    assert "lacks the privilege VirtualMachine.Provisioning.DeployTemplate on folder" in line


def test_the_mac_set_in_the_clone_spec_asks_for_edit_device(session):
    placement = targets.locate(session, target())
    folder = {n.privilege for _, what, n in privileges.needed(placement, linked_clone=False) if what.startswith("folder")}
    assert "VirtualMachine.Config.EditDevice" in folder
