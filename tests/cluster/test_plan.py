"""The pure planners, table-driven: scale up/down, roll order, who to rebuild, what destroy takes.

Quorum, the joined rule and leader choice are etcd's: tests/etcd/test_membership.py.
"""

from __future__ import annotations

import pytest

from vmcoreos import etcd
from vmcoreos.cluster import plan
from vmcoreos.cluster.desired import Desired
from vmcoreos.cluster.inventory import Inventory
from vmcoreos.errors import OwnershipError
from vmcoreos.guest.configvalues import NodeConfig
from vmcoreos.vsphere.vminfo import MARK_CLUSTER, MARK_DIGEST, MARK_DISTRO, MARK_ROLE, MARK_VERSION, VmInfo

WANT = Desired("flatcar", None, 2, 2048)


def _vm(name, *, cluster="lab", power="poweredOn", template=False, role="node", **extra):
    marks = {MARK_CLUSTER: cluster, MARK_ROLE: role} if cluster else {}
    # As deployed from the cluster file: the config digest _config(i) renders, 2 CPUs, 2048 MB.
    digest = {MARK_DIGEST: f"digest-{int(name[-2:])}"} if name[-2:].isdigit() else {}
    return VmInfo(object(), name, template, power, None, None, {**marks, **digest, **extra}, cpus=2, memory_mb=2048)


def _member(i):
    return etcd.Member(str(i), f"lab-0{i}", (f"http://10.0.0.{i}:2380",), (f"http://10.0.0.{i}:2379",))


def _config(i):
    return NodeConfig(f"lab-{i:02d}", i, None, "", {}, f"digest-{i}", "cloud-config")


@pytest.mark.parametrize("existing, wanted, remove, power_on, create", [
    ({}, 3, [], [], ["lab-01", "lab-02", "lab-03"]),  # a new cluster
    ({"lab-01": "poweredOn", "lab-02": "poweredOn", "lab-03": "poweredOn"}, 3, [], [], []),  # nothing to do
    ({"lab-01": "poweredOn", "lab-02": "poweredOn"}, 3, [], [], ["lab-03"]),  # scale up
    ({"lab-01": "poweredOn", "lab-02": "poweredOn", "lab-03": "poweredOn", "lab-10": "poweredOn"}, 1,
     ["lab-10", "lab-03", "lab-02"], [], []),  # scale down: highest number first
    ({"lab-01": "poweredOff", "lab-02": "poweredOn"}, 2, [], ["lab-01"], []),  # stopped nodes are started
])
def test_deploy_plans_scale_down_start_and_scale_up(existing, wanted, remove, power_on, create):
    inventory = Inventory("lab", {n: _vm(n, power=p) for n, p in existing.items()})
    planned = plan.plan_deploy([_config(i) for i in range(1, wanted + 1)], inventory, WANT)
    assert list(planned.remove) == remove
    assert list(planned.power_on) == power_on
    assert [c.name for c in planned.create] == create


def test_deploy_refuses_a_foreign_vm_under_a_wanted_name_but_not_others():
    inventory = Inventory.sort("lab", [_vm("lab-02", cluster="other"), _vm("lab-09", cluster=None)])
    with pytest.raises(OwnershipError, match="refusing to use VM 'lab-02'"):
        plan.plan_deploy([_config(1), _config(2)], inventory)
    assert [c.name for c in plan.plan_deploy([_config(1)], inventory).create] == ["lab-01"]


@pytest.mark.parametrize("current, distro, target, older", [
    (None, "flatcar", "4593.2.5", True),  # no mark: move it
    ("4593.2.5", "flatcar", "4593.2.5", False),
    ("4593.2.4", "flatcar", "4593.2.5", True),
    ("4593.10.0", "flatcar", "4593.9.0", False),  # numeric, not string order: never a downgrade
    ("4593.2.5", "coreos", "4593.2.5", False),  # same version string: nothing to do
    ("2345.3.0", "coreos", "4593.2.5", True),  # another distro: move it
    ("local-abc", "flatcar", "local-def", True),  # local builds have no order
])
def test_runs_older(current, distro, target, older):
    vm = _vm("lab-01", **({MARK_VERSION: current} if current else {}), **{MARK_DISTRO: distro})
    assert plan.runs_older(vm, "flatcar", target) is older


@pytest.mark.parametrize("existing, leader, order", [
    (["lab-01", "lab-02", "lab-03"], "lab-01", ["lab-02", "lab-03", "lab-01"]),  # leader last
    (["lab-01", "lab-02", "lab-03"], "lab-02", ["lab-01", "lab-03", "lab-02"]),
    (["lab-01", "lab-03"], "lab-03", ["lab-02", "lab-01", "lab-03"]),  # the missing one first
    (["lab-01", "lab-02", "lab-03"], None, ["lab-01", "lab-02", "lab-03"]),  # no leader known: by number
])
def test_roll_order(existing, leader, order):
    pending = [_config(i) for i in (3, 1, 2)]
    assert [c.name for c in plan.roll_order(pending, existing, leader)] == order


@pytest.mark.parametrize("versions, force, pending, done", [
    ({1: "1.0.0", 2: "1.0.0", 3: "1.0.0"}, False, [1, 2, 3], []),
    ({1: "2.0.0", 2: "1.0.0", 3: "2.0.0"}, False, [2], [1, 3]),  # resuming an interrupted roll
    ({1: "2.0.0", 2: "2.0.0", 3: "2.0.0"}, False, [], [1, 2, 3]),  # nothing to do
    ({1: "2.0.0", 2: "2.0.0", 3: "2.0.0"}, True, [1, 2, 3], []),  # --force
    ({1: "2.0.0", 3: "2.0.0"}, False, [2], [1, 3]),  # a missing node is always made
])
def test_rebuild_plans_who_moves(versions, force, pending, done):
    nodes = {f"lab-0{i}": _vm(f"lab-0{i}", **{MARK_VERSION: v, MARK_DISTRO: "flatcar"}) for i, v in versions.items()}
    planned = plan.plan_rebuild([_config(i) for i in (1, 2, 3)], Inventory("lab", nodes),
                                Desired("flatcar", "2.0.0", 2, 2048), force=force)
    assert [c.index for c in planned.pending] == pending
    assert [c.index for c in planned.done] == done
    assert planned.message == ("" if pending else "all nodes run 2.0.0 as the cluster file asks; nothing to do")


@pytest.mark.parametrize("templates, names", [
    (False, ["lab-01", "lab-02"]),
    (True, ["lab-01", "lab-02", "lab-template-flatcar-1"]),
])
def test_destroy_takes_ours_only(templates, names):
    found = [_vm("lab-02"), _vm("lab-01"), _vm("lab-template-flatcar-1", template=True, role="template"),
             _vm("lab-03", cluster="other")]
    planned = plan.plan_destroy(Inventory.sort("lab", found), templates=templates)
    assert planned.names == names
    assert planned.skipped == ["lab-03"]


@pytest.mark.parametrize("skip, skip_peer, sick", [
    ("lab-03", None, ["lab-02"]),
    ("lab-02", None, []),  # the one being replaced does not count
    ("lab-09", "http://10.0.0.2:2380", []),  # nor does a member known only by its peer URL
])
def test_sick_members_before_a_roll_step(skip, skip_peer, sick):
    view = etcd.ClusterView([_member(i) for i in (1, 2, 3)], leader="1")
    health = {"1": True, "2": False, "3": True}
    assert plan.sick_members(view, health, skip, skip_peer) == sick


def test_plan_steps_name_every_node_once_in_apply_order():
    # What --dry-run prints is the plan apply is given, node by node.
    existing = {"lab-01": "poweredOn", "lab-02": "poweredOff", "lab-03": "poweredOn", "lab-04": "poweredOn"}
    inventory = Inventory("lab", {n: _vm(n, power=p) for n, p in existing.items()})
    assert [s[:2] for s in plan.plan_deploy([_config(i) for i in (1, 2)], inventory, WANT).steps()] == [
        ("lab-04", "remove"), ("lab-03", "remove"), ("lab-01", "keep"), ("lab-02", "start")]
    assert plan.plan_deploy([_config(i) for i in range(1, 6)], inventory, WANT).steps()[-1] == (
        "lab-05", "create", ("missing",))

    nodes = {f"lab-0{i}": _vm(f"lab-0{i}", **{MARK_VERSION: v, MARK_DISTRO: "flatcar"}) for i, v in {1: "2.0.0", 2: "1.0.0"}.items()}
    configs = [_config(i) for i in (1, 2, 3)]
    assert plan.plan_rebuild(configs, Inventory("lab", nodes), Desired("flatcar", "2.0.0", 2, 2048)).steps() == [
        ("lab-01", "keep", ()), ("lab-02", "replace", ("image 1.0.0 → 2.0.0",)), ("lab-03", "create", ("missing",))]
    # A local --ova in a dry run is not read, so its build is unknown: the plan says what the node runs.
    unread = plan.plan_rebuild(configs, Inventory("lab", nodes), WANT)
    assert [s.action for s in unread.steps()] == ["replace if the OVA's build differs"] * 2 + ["create"]
    assert unread.steps()[1].reasons == ("runs 1.0.0; the dry run does not read a local OVA to learn its build",)

    found = Inventory("lab", {"lab-01": _vm("lab-01")}, templates=[_vm("lab-template-x", template=True, role="template")],
                      foreign=[_vm("lab-02", cluster=None)])
    assert [s[:2] for s in plan.plan_destroy(found, templates=True).steps()] == [
        ("lab-01", "remove"), ("lab-template-x", "remove template"), ("lab-02", "leave (not marked ours)")]
