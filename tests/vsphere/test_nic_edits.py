"""A clone's NIC is put on vsphere.network by an edit in its spec, or the run stops naming the network."""

from __future__ import annotations

import pytest
from pyVmomi import vim

from vmcoreos.errors import VSphereError
from vmcoreos.vsphere import vms
from vmcoreos.vsphere.inventory import Placement
from vmcoreos.vsphere.vminfo import VmInfo


class FakeSession:
    def __init__(self, answers):
        self.answers = answers

    def retrieve(self, refs, props, kind):
        return {ref: self.answers.get((ref, tuple(props)), {}) for ref in refs}


def _placement(network, name):
    return Placement(None, None, None, network, name, None, "C0")


def _template(devices):
    ref = vim.VirtualMachine("vm-1")
    return VmInfo(ref, "lab-template", True, "poweredOff", None, None), {
        (ref, ("config.hardware.device",)): {"config.hardware.device": devices}}


def test_the_first_nic_is_moved_to_a_standard_port_group():
    nic = vim.vm.device.VirtualVmxnet3(key=4000)
    disk = vim.vm.device.VirtualDisk(key=2000)
    template, answers = _template([disk, nic, vim.vm.device.VirtualVmxnet3(key=4001)])
    network = vim.Network("network-9")
    edits = vms.nic_edits(FakeSession(answers), template, _placement(network, "Lab Net"))
    assert len(edits) == 1 and edits[0].operation == "edit" and edits[0].device.key == 4000
    assert (edits[0].device.backing.deviceName, edits[0].device.backing.network) == ("Lab Net", network)
    spec = vms.clone_spec(_placement(network, "Lab Net"), cpus=2, memory_mb=2048, extra={}, nics=edits)
    assert spec.location.deviceChange == edits and not spec.config.deviceChange
    # A template on that network already needs no edit, and nothing is read.
    template.networks = ("network-9",)
    assert vms.nic_edits(FakeSession({}), template, _placement(network, "Lab Net")) == []


def test_a_distributed_port_group_gets_its_switch_and_key():
    template, answers = _template([vim.vm.device.VirtualE1000(key=4000)])
    pg, switch = vim.dvs.DistributedVirtualPortgroup("dvportgroup-7"), vim.DistributedVirtualSwitch("dvs-1")
    answers[(pg, ("key", "config.distributedVirtualSwitch"))] = {"key": "dvportgroup-7",
                                                                  "config.distributedVirtualSwitch": switch}
    answers[(switch, ("uuid",))] = {"uuid": "50 2a"}
    port = vms.nic_edits(FakeSession(answers), template, _placement(pg, "DC0_DVPG0"))[0].device.backing.port
    assert (port.portgroupKey, port.switchUuid) == ("dvportgroup-7", "50 2a")


@pytest.mark.parametrize("devices, answers, message", [
    ([vim.vm.device.VirtualDisk(key=2000)], {}, "template lab-template has no network card, so its clones cannot be"
                                                " put on network 'DC0_DVPG0' (vsphere.network)"),
    ([vim.vm.device.VirtualE1000(key=4000)], {}, "cannot read the switch of distributed port group 'DC0_DVPG0'"),
])
def test_a_network_a_clone_cannot_be_put_on_stops_the_run_naming_it(devices, answers, message):
    template, found = _template(devices)
    pg = vim.dvs.DistributedVirtualPortgroup("dvportgroup-7")
    with pytest.raises(VSphereError) as err:
        vms.nic_edits(FakeSession({**found, **answers}), template, _placement(pg, "DC0_DVPG0"))
    assert message in err.value.message
