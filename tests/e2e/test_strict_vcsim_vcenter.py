"""The strict bed reproduces the last real-vCenter behaviours the tool met, against pyvmomi directly.

A role that lacks privileges (HasPrivilegeOnEntities and the guarded calls agree), no property reads
without a session, vCenter's own power-on after a clone whose spec asks for it, and linked clones that
share their template's disk. The plain simulator does none of these.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.direct import BedInventory, clone_spec, destroy, pinned_context, put, ready_lease, strict_pyvmomi_bed, wait
from tests.harness.services import Vcsim

pytestmark = pytest.mark.e2e

MiB = 1 << 20
CREATE_FROM = "VirtualMachine.Inventory.CreateFromExisting"


@pytest.fixture(scope="module")
def denied(tmp_path_factory):
    """A strict bed whose user lacks CreateFromExisting everywhere and CreateSnapshot on DC0_C0_RP0_VM1 only."""
    yield from strict_pyvmomi_bed(tmp_path_factory.mktemp("denied-vcsim"),
                             deny=(CREATE_FROM, "VirtualMachine.State.CreateSnapshot@DC0_C0_RP0_VM1"))


def granted(si, entity, privileges) -> dict[str, bool]:
    content = si.RetrieveContent()
    (answer,) = content.authorizationManager.HasPrivilegeOnEntities(
        entity=[entity], sessionId=content.sessionManager.currentSession.key, privId=list(privileges))
    return {p.privId: p.isGranted for p in answer.privAvailability}


def test_a_missing_privilege_is_reported_and_enforced_on_the_call(denied):
    from pyVmomi import vim

    _, si = denied
    inv = BedInventory(si)
    assert granted(si, inv.dc.vmFolder, [CREATE_FROM, "VApp.Import"]) == {CREATE_FROM: False, "VApp.Import": True}
    with pytest.raises(vim.fault.NoPermission) as err:
        inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="denied-clone", spec=clone_spec(inv))
    assert err.value.privilegeId == CREATE_FROM and err.value.object == inv.dc.vmFolder
    assert inv.content.searchIndex.FindChild(inv.dc.vmFolder, "denied-clone") is None


def test_a_privilege_denied_on_one_entity_is_granted_on_the_others(denied):
    from pyVmomi import vim

    _, si = denied
    inv = BedInventory(si)
    snap = "VirtualMachine.State.CreateSnapshot"
    vm1 = inv.content.searchIndex.FindChild(inv.dc.vmFolder, "DC0_C0_RP0_VM1")
    assert granted(si, vm1, [snap]) == {snap: False}
    assert granted(si, inv.vm, [snap]) == {snap: True}
    with pytest.raises(vim.fault.NoPermission) as err:
        vm1.CreateSnapshot_Task(name="s", memory=False, quiesce=False)
    assert err.value.privilegeId == snap and err.value.object == vm1


def test_property_reads_need_a_session(strict_bed_pair):
    from pyVmomi import vim, vmodl

    for sim, must_refuse in strict_bed_pair:
        si = sim.connect()
        content = si.RetrieveContent()
        pc = content.propertyCollector
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=content.rootFolder)],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.Folder, pathSet=["name"])])
        assert pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions()).objects
        content.sessionManager.Logout()
        if must_refuse:
            with pytest.raises(vim.fault.NotAuthenticated):
                pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
            with pytest.raises(vim.fault.NotAuthenticated):
                pc.RetrieveProperties([spec])
        else:  # the plain simulator answers anyone
            assert pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions()).objects


@pytest.fixture(scope="module")
def strict_bed_pair(tmp_path_factory):
    strict = Vcsim(tmp_path_factory.mktemp("session-strict"), strict=True).start()
    lenient = Vcsim(tmp_path_factory.mktemp("session-lenient")).start()
    try:
        yield [(strict, True), (lenient, False)]
    finally:
        strict.stop()
        lenient.stop()


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    yield from strict_pyvmomi_bed(tmp_path_factory.mktemp("power-vcsim"), power_on_delay=0.5)


def test_clone_spec_power_on_is_a_task_of_its_own_after_the_clone(bed):
    from pyVmomi import vim

    _, si = bed
    inv = BedInventory(si)
    spec = clone_spec(inv)
    spec.powerOn = True
    clone = wait(inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="spec-powered", spec=spec))
    try:
        assert clone.runtime.powerState == "poweredOff"  # the clone task ended before its power-on
        mine = clone.PowerOnVM_Task()
        with pytest.raises(vim.fault.InvalidPowerState):
            wait(mine)
        assert clone.runtime.powerState == "poweredOn"
        names = [t.info.descriptionId for t in clone.recentTask]
        assert names.count("VirtualMachine.powerOn") == 2
    finally:
        wait(clone.PowerOffVM_Task())
        destroy(clone)


def test_a_clone_without_power_on_stays_off_unless_the_bed_powers_every_clone(bed, tmp_path):
    _, si = bed
    inv = BedInventory(si)
    clone = wait(inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="spec-off", spec=clone_spec(inv)))
    time.sleep(0.7)
    assert clone.runtime.powerState == "poweredOff"
    destroy(clone)
    for _, si2 in strict_pyvmomi_bed(tmp_path / "always", clone_power_on="always", power_on_delay=0.1):
        inv2 = BedInventory(si2)
        clone = wait(inv2.vm.CloneVM_Task(folder=inv2.dc.vmFolder, name="always-on", spec=clone_spec(inv2)))
        deadline = time.monotonic() + 5
        while clone.runtime.powerState != "poweredOn" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert clone.runtime.powerState == "poweredOn"


def test_clone_takes_cpu_and_memory_from_its_spec(bed):
    _, si = bed
    inv = BedInventory(si)
    clone = wait(inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="sized", spec=clone_spec(inv, numCPUs=3, memoryMB=1028)))
    try:
        assert (clone.config.hardware.numCPU, clone.config.hardware.memoryMB) == (3, 1028)
        assert (inv.vm.config.hardware.numCPU, inv.vm.config.hardware.memoryMB) != (3, 1028)
    finally:
        destroy(clone)


def test_a_linked_clone_shares_its_templates_disk(bed):
    from pyVmomi import vim

    _, si = bed
    inv = BedInventory(si)
    lease = ready_lease(inv, "link-base")
    template = inv.content.searchIndex.FindChild(inv.dc.vmFolder, "link-base")
    clones = []
    try:
        (device,) = [d for d in lease.info.deviceUrl if d.disk]
        assert put(device.url, b"l" * (2 * MiB), pinned_context(), pin=device.sslThumbprint) == 200
        lease.HttpNfcLeaseComplete()
        snapshot = wait(template.CreateSnapshot_Task(name="base", memory=False, quiesce=False))
        free = inv.datastore.summary.freeSpace
        (base_disk,) = [d for d in template.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
        for kind in ("createNewChildDiskBacking", None):
            spec = clone_spec(inv)
            if kind:
                spec.location.diskMoveType, spec.snapshot = kind, snapshot
            clones.append(wait(template.CloneVM_Task(folder=inv.dc.vmFolder, name=f"link-{bool(kind)}", spec=spec)))
        linked, full = clones
        (disk,) = [d for d in linked.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
        assert disk.backing.parent is not None and disk.backing.parent.fileName == base_disk.backing.fileName
        assert disk.backing.fileName != base_disk.backing.fileName
        (copy,) = [d for d in full.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]
        assert copy.backing.parent is None
        assert inv.datastore.summary.freeSpace == free - 2 * MiB  # the full clone's copy; the linked one's child is empty
    finally:
        for vm in clones:
            destroy(vm)
        destroy(template)


def test_an_object_the_user_may_not_read_answers_with_missing_set(tmp_path):
    from pyVmomi import vim, vmodl

    for sim, si in strict_pyvmomi_bed(tmp_path / "noread", deny=("System.Read@DC0_C0_RP0_VM0",)):
        content = si.RetrieveContent()
        pc = content.propertyCollector
        vm = content.searchIndex.FindByInventoryPath("DC0/vm/DC0_C0_RP0_VM0")
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=vm)],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=vim.VirtualMachine, pathSet=["name"])])
        (obj,) = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions()).objects
        assert not obj.propSet
        (missing,) = obj.missingSet
        assert missing.path == "name" and isinstance(missing.fault, vim.fault.NoPermission)
        assert missing.fault.privilegeId == "System.Read"
