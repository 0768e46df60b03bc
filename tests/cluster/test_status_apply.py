"""status.apply and verdict: one row per node from what vSphere and etcd say, and the word a monitor reads.

Against a fake run: its inventory, its etcd view and health, and the topology are given, not read.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vmcoreos import etcd
from vmcoreos.cluster import status
from vmcoreos.cluster.desired import Drift
from vmcoreos.cluster.inventory import Inventory
from vmcoreos.guest.configvalues import NodeConfig
from vmcoreos.vsphere.topology import Topology
from vmcoreos.vsphere.vminfo import MARK_CLUSTER, MARK_ROLE, VmInfo

ESX1, ESX2 = SimpleNamespace(_moId="host-1"), SimpleNamespace(_moId="host-2")
DS1, DS2 = SimpleNamespace(_moId="datastore-1"), SimpleNamespace(_moId="datastore-2")
TOPOLOGY = Topology(None, False, {"esx1": ESX1, "esx2": ESX2}, {}, {"ds1": DS1, "ds2": DS2},
                    names={"host-1": "esx1", "host-2": "esx2", "datastore-1": "ds1", "datastore-2": "ds2"})


def _vm(name, power="poweredOn", host=ESX1, store=DS1):
    return VmInfo(object(), name, False, power, "guestToolsRunning", "127.0.0.9",
                  {MARK_CLUSTER: "lab", MARK_ROLE: "node"}, host=host, datastores=(store,))


def _member(i):
    return etcd.Member(f"{i:x}", f"lab-0{i}", (f"http://127.0.0.{i}:2380",), (f"http://127.0.0.{i}:2379",))


class FakeMembers:
    def __init__(self, view, healthy):
        self.view, self.healthy = view, healthy

    def live_view(self, nodes):
        return None if self.view is None else (object(), self.view)

    def health(self, view):
        return {m.id: m.id in self.healthy for m in view.members}


def _run(members):
    return SimpleNamespace(name="lab", members=members, placement=SimpleNamespace(topology=TOPOLOGY), session=None)


def _plan(wanted, vms, drift=None):
    configs = tuple(NodeConfig(f"lab-0{i}", i, None, "#cloud-config\n", {}, f"d{i}") for i in range(1, wanted + 1))
    nodes = {vm.name: vm for vm in vms}
    drift = {name: (drift or {}).get(name, Drift()) for name in nodes if int(name[-1]) <= wanted}
    return status.StatusPlan("lab", configs, Inventory("lab", nodes), drift)


def _rows(result):
    return {s.name: (s.stage, s.healthy, s.leader, s.reasons) for s in result.nodes}


def test_each_node_is_a_row_whatever_vsphere_and_etcd_say_of_it():
    vms = [_vm("lab-01"), _vm("lab-02", host=ESX2, store=DS2), _vm("lab-03"), _vm("lab-05", power="poweredOff")]
    view = etcd.ClusterView([_member(1), _member(2)], leader="1")
    planned = _plan(4, vms, drift={"lab-03": Drift(reconfigure=("cpus 2 -> 4",))})
    result = status.apply(_run(FakeMembers(view, healthy={"1"})), planned)
    assert _rows(result) == {
        "lab-01": ("healthy", True, True, []),
        "lab-02": ("unhealthy", False, False, []),
        "lab-03": ("not a member", False, False, ["cpus 2 -> 4"]),
        "lab-04": ("missing", False, False, ["missing"]),
        "lab-05": ("poweredOff", False, False, ["beyond the wanted count"]),
    }
    assert [s.name for s in result.nodes] == ["lab-01", "lab-02", "lab-03", "lab-04", "lab-05"]
    assert (result.nodes[1].host, result.nodes[1].datastore) == ("esx2", "ds2")
    assert result.etcd_answered is True and status.verdict(result) == "critical"


def test_running_nodes_and_no_etcd_answer_is_unknown_not_critical():
    result = status.apply(_run(FakeMembers(None, set())), _plan(2, [_vm("lab-01"), _vm("lab-02", host=ESX2)]))
    assert result.etcd_answered is False
    assert {s.stage for s in result.nodes} == {"not a member"}
    assert status.verdict(result) == "unknown"


def test_powered_off_nodes_and_no_etcd_answer_is_critical():
    vms = [_vm("lab-01", power="poweredOff"), _vm("lab-02", power="poweredOff", host=ESX2)]
    result = status.apply(_run(FakeMembers(None, set())), _plan(2, vms))
    assert status.verdict(result) == "critical"


@pytest.mark.parametrize("second_host, second_store, verdict, shares", [
    (ESX2, DS2, "healthy", ""),
    (ESX1, DS2, "degraded", "host with lab-02"),  # esx2 is free: sharing esx1 was avoidable
    (ESX2, DS1, "degraded", "datastore with lab-02"),
])
def test_healthy_members_sharing_a_host_or_datastore_that_need_not_are_degraded(second_host, second_store, verdict,
                                                                                   shares):
    vms = [_vm("lab-01"), _vm("lab-02", host=second_host, store=second_store)]
    view = etcd.ClusterView([_member(1), _member(2)], leader="2")
    result = status.apply(_run(FakeMembers(view, healthy={"1", "2"})), _plan(2, vms))
    assert status.verdict(result) == verdict
    assert result.nodes[0].shares == shares
    assert result.drs_rule is None  # no DRS on this compute resource: no rule to judge
