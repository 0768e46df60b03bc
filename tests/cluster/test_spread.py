"""Placement during a run: on a DRS cluster a new node joins the anti-affinity rule before it powers on."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pyVmomi import vim

from vmcoreos.cluster import nodes, spread
from vmcoreos.cluster.placement import Spot
from vmcoreos.vsphere import power, vms
from vmcoreos.vsphere.topology import Topology


H1, H2, D = vim.HostSystem("host-1"), vim.HostSystem("host-2"), vim.Datastore("datastore-1")


def _run(drs: bool):
    topo = Topology(compute=object(), drs=drs, hosts={"h1": H1, "h2": H2}, mounts={"h1": ("d",), "h2": ("d",)},
                    datastores={"d": D}, names={"host-1": "h1", "host-2": "h2", "datastore-1": "d"})
    reporter = SimpleNamespace(event=lambda text: None, warn=lambda text: None)
    placement = SimpleNamespace(topology=topo, resource_pool=None, datastore=D, host=None, network_name="VM Network")
    return SimpleNamespace(placement=placement, parallel=4, said=set(), replaced={}, reporter=reporter,
                           settings=SimpleNamespace(name="lab", task_stall=60,
                                                    node=SimpleNamespace(cpus=1, memory_mb=512)),
                           name="lab", session=object())


@pytest.mark.parametrize("drs", [True, False])
def test_a_clone_joins_the_rule_before_it_powers_on(mocker, drs):
    run = _run(drs)
    order = mocker.Mock()
    specs = {}

    def clone_many(session, template, jobs, placement, **kw):
        specs.update(jobs)
        order.clone([name for name, _ in jobs])
        return [vim.VirtualMachine(f"vm-{name}") for name, _ in jobs]

    mocker.patch.object(vms, "clone_many", side_effect=clone_many)
    mocker.patch.object(vms, "refresh_many", side_effect=lambda session, found: found)
    mocker.patch.object(vms, "first_nic", return_value=None)
    mocker.patch.object(vms, "network_backing", return_value=None)
    mocker.patch.object(spread, "_sync", side_effect=lambda run, refs: order.rule(sorted(r._moId for r in refs)))
    mocker.patch.object(power, "on_many", side_effect=lambda session, found: order.power([v.name for v in found]))
    template = SimpleNamespace(vm=None, name="t", linked_snapshot=None)
    image = SimpleNamespace(distro="flatcar", version="1", sha512="ab" * 64, signed=None)
    configs = [SimpleNamespace(name=f"lab-0{i}", guestinfo={}, mac=None, digest="digest", sections=(("config", "x"),))
               for i in (1, 2)]
    nodes.clone_all(run, template, image, [(c, c) for c in configs], nodes={})

    names = [call[0] for call in order.mock_calls]
    assert names == (["clone", "rule", "power"] if drs else ["clone", "power"])
    if drs:
        assert order.mock_calls[1].args == (["vm-lab-01", "vm-lab-02"],)
    # The tool alone powers nodes on, after the rule on DRS: never the clone spec too, which would race it
    # with vCenter's own power-on (InvalidPowerState; coreos-facts §8).
    assert all(spec.powerOn is False for spec in specs.values())
    assert {n: spec.location.host for n, spec in specs.items()} == {"lab-01": H1, "lab-02": H2}


def test_a_removed_node_leaves_the_rule_and_its_place_is_kept_for_its_replacement(mocker):
    run = _run(True)
    synced = mocker.patch.object(spread, "_sync")
    vm = vms.VmInfo("ref-2", "lab-02", False, "poweredOn", None, None, host=H2, datastores=(D,))
    others = {"lab-01": vms.VmInfo("ref-1", "lab-01", False, "poweredOn", None, None), "lab-02": vm}
    spread.leave(run, vm, others)
    synced.assert_called_once_with(run, ["ref-1"])
    assert run.replaced == {"lab-02": Spot("h2", "d")}
