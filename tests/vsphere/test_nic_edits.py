"""A clone's first NIC gets the node's MAC and, when the template is on another network, vsphere.network;
a network a clone cannot be put on stops the run naming it."""

from __future__ import annotations

import pytest
from pyVmomi import vim

from vmcoreos.errors import VSphereError
from vmcoreos.vsphere import vms
from vmcoreos.vsphere.targets import Placement
from vmcoreos.vsphere.vminfo import VmInfo


class FakeSession:
    def __init__(self, answers):
        self.answers = answers

    def retrieve(self, refs, props, kind):
        return {ref: self.answers.get((ref, tuple(props)), {}) for ref in refs}


def _placement(network, name):
    return Placement(None, None, None, network, name, None, "C0")


def _template(networks=("network-7",)):
    return VmInfo(vim.VirtualMachine("vm-1"), "lab-template", True, "poweredOff", None, None, networks=networks)


def test_a_standard_port_group_and_the_mac_in_one_edit_of_a_copy():
    nic = vim.vm.device.VirtualVmxnet3(key=4000, macAddress="00:50:56:00:00:01")
    network = vim.Network("network-9")
    backing = vms.network_backing(FakeSession({}), _template(), nic, _placement(network, "Lab Net"))
    assert (backing.deviceName, backing.network) == ("Lab Net", network)
    edit = vms.nic_edit(nic, "00:50:56:3f:00:02", backing)
    assert edit.operation == "edit" and edit.device.key == 4000 and edit.device is not nic
    assert (edit.device.macAddress, edit.device.addressType, edit.device.backing) == ("00:50:56:3f:00:02", "manual", backing)
    assert nic.macAddress == "00:50:56:00:00:01"  # the template's device is not changed for the next node
    assert vms.nic_edit(nic) is None
    # A template on that network already: no backing, and nothing is read.
    assert vms.network_backing(FakeSession({}), _template(("network-9",)), nic, _placement(network, "Lab Net")) is None


def test_a_distributed_port_group_gets_its_switch_and_key():
    pg, switch = vim.dvs.DistributedVirtualPortgroup("dvportgroup-7"), vim.DistributedVirtualSwitch("dvs-1")
    answers = {(pg, ("key", "config.distributedVirtualSwitch")): {"key": "dvportgroup-7",
                                                                   "config.distributedVirtualSwitch": switch},
               (switch, ("uuid",)): {"uuid": "50 2a"}}
    nic = vim.vm.device.VirtualE1000(key=4000)
    port = vms.network_backing(FakeSession(answers), _template(), nic, _placement(pg, "DC0_DVPG0")).port
    assert (port.portgroupKey, port.switchUuid) == ("dvportgroup-7", "50 2a")


@pytest.mark.parametrize("nic, message", [
    (None, "template lab-template has no network card, so its clones cannot be put on network 'DC0_DVPG0'"
           " (vsphere.network)"),
    (vim.vm.device.VirtualE1000(key=4000), "cannot read the switch of distributed port group 'DC0_DVPG0'"),
])
def test_a_network_a_clone_cannot_be_put_on_stops_the_run_naming_it(nic, message):
    pg = vim.dvs.DistributedVirtualPortgroup("dvportgroup-7")
    with pytest.raises(VSphereError) as err:
        vms.network_backing(FakeSession({}), _template(), nic, _placement(pg, "DC0_DVPG0"))
    assert message in err.value.message
