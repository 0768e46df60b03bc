"""The strict bed as vCenter treats what converge changes: a running VM's CPUs and memory, a clone's network."""

from __future__ import annotations

import pytest
from tests.e2e.direct import BedInventory, clone_spec, destroy, strict_pyvmomi_bed, wait


pytestmark = pytest.mark.e2e  # every test starts build/vcsim


@pytest.fixture(scope="module")
def inv(tmp_path_factory):
    for _, si in strict_pyvmomi_bed(tmp_path_factory.mktemp("strict-converge")):
        yield BedInventory(si)


def test_a_running_vm_takes_cpus_or_memory_only_by_hot_add_and_never_fewer(inv):
    from pyVmomi import vim

    vm = wait(inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="strict-hot", spec=clone_spec(inv, numCPUs=2,
                                                                                              memoryMB=1024)))
    try:
        wait(vm.PowerOnVM_Task())
        for change in ({"numCPUs": 4}, {"memoryMB": 2048}, {"numCPUs": 1}):
            with pytest.raises(vim.fault.InvalidPowerState):
                wait(vm.ReconfigVM_Task(vim.vm.ConfigSpec(**change)))
        wait(vm.ReconfigVM_Task(vim.vm.ConfigSpec(cpuHotAddEnabled=True)))  # other changes still go through
        wait(vm.ReconfigVM_Task(vim.vm.ConfigSpec(numCPUs=4)))  # hot-add on: more is fine
        with pytest.raises(vim.fault.InvalidPowerState):
            wait(vm.ReconfigVM_Task(vim.vm.ConfigSpec(numCPUs=2)))  # fewer never
        wait(vm.PowerOffVM_Task())
        wait(vm.ReconfigVM_Task(vim.vm.ConfigSpec(numCPUs=2, memoryMB=2048)))  # powered off: anything
        assert (vm.config.hardware.numCPU, vm.config.hardware.memoryMB) == (2, 2048)
    finally:
        if vm.runtime.powerState == "poweredOn":
            wait(vm.PowerOffVM_Task())
        destroy(vm)


def test_a_clone_goes_on_the_network_its_spec_names(inv):
    from pyVmomi import vim

    pg = next(n for n in inv.dc.network if isinstance(n, vim.dvs.DistributedVirtualPortgroup)
              and n.config.distributedVirtualSwitch.name == "DVS0")
    nic = next(d for d in inv.vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard))
    nic.backing = vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
        port=vim.dvs.PortConnection(portgroupKey=pg.key, switchUuid=pg.config.distributedVirtualSwitch.uuid))
    spec = clone_spec(inv)
    spec.location.deviceChange = [vim.vm.device.VirtualDeviceSpec(operation="edit", device=nic)]
    vm = wait(inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="strict-net", spec=spec))
    try:
        assert [n.name for n in vm.network] == [pg.name]
        backing = next(d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualEthernetCard)).backing
        assert backing.port.portgroupKey == pg.key
        # Without the edit a clone keeps its source's network.
        plain = wait(inv.vm.CloneVM_Task(folder=inv.dc.vmFolder, name="strict-net-2", spec=clone_spec(inv)))
        try:
            assert [n.name for n in plain.network] == [n.name for n in inv.vm.network]
        finally:
            destroy(plain)
    finally:
        destroy(vm)
