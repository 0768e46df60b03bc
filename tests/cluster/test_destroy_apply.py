"""destroy.apply carries out its plan in order: the DRS rule first, then the nodes, then the templates, each
VM's mark read again just before it is deleted.

Against a fake run: the reads, the rule and the deletions are recorded instead of done.
"""

from __future__ import annotations

import dataclasses

import pytest

from vmcoreos.cluster import destroy
from vmcoreos.cluster.inventory import Inventory
from vmcoreos.errors import OwnershipError
from vmcoreos.vsphere.vminfo import MARK_CLUSTER, MARK_ROLE, VmInfo


def _vm(name, *, cluster="lab", role="node", template=False):
    return VmInfo(object(), name, template, "poweredOn", None, None, {MARK_CLUSTER: cluster, MARK_ROLE: role})


class FakeRun:
    name = "lab"
    parallel = 4

    def __init__(self, found):
        self.found = found
        self.session = object()
        self.events: list[str] = []
        self.reporter = type("R", (), {"event": lambda s, m: self.events.append(m)})()

    def inventory(self):
        return Inventory.sort("lab", self.found)


@pytest.fixture
def recorded(monkeypatch):
    """What apply did, in order; `now` is what vCenter says of a VM when apply reads it again."""
    log: list[tuple] = []
    now: dict[str, VmInfo] = {}
    monkeypatch.setattr(destroy.spread, "drop_rule", lambda session, cluster, nodes, reporter: log.append(
        ("drop rule", sorted(v.name for v in nodes))))
    monkeypatch.setattr(destroy.vms, "refresh", lambda session, vm: now.get(vm.name, vm))
    monkeypatch.setattr(destroy.vms, "destroy", lambda session, vm, cluster: log.append(("delete", vm.name)))
    return log, now


# What the listing found under the cluster's names (it lists only those): two nodes, a template, a look-alike.
FOUND = [_vm("lab-02"), _vm("lab-01"), _vm("lab-template-flatcar-1", role="template", template=True),
         _vm("lab-03", cluster="other")]


@pytest.mark.parametrize("templates, deleted", [
    (False, ["lab-01", "lab-02"]),
    (True, ["lab-01", "lab-02", "lab-template-flatcar-1"]),
])
def test_the_plan_takes_ours_only_and_leaves_a_look_alike(templates, deleted):
    planned = destroy.plan(FakeRun(FOUND), templates=templates)
    assert planned.names == deleted
    assert planned.skipped == ["lab-03"]  # named like ours, marked another cluster's: listed, never deleted


def test_the_rule_goes_first_then_every_node_then_the_templates(recorded):
    log, _ = recorded
    run = FakeRun(FOUND)
    result = destroy.apply(run, destroy.plan(run, templates=True))
    assert log[0] == ("drop rule", ["lab-01", "lab-02"])
    nodes, templates = log[1:3], log[3:]
    assert sorted(nodes) == [("delete", "lab-01"), ("delete", "lab-02")]  # side by side: any order
    assert templates == [("delete", "lab-template-flatcar-1")]
    assert sorted(result.removed) == ["lab-01", "lab-02", "lab-template-flatcar-1"]
    assert "lab-03" not in str(log)


def test_a_node_re_marked_since_the_plan_is_refused_and_the_templates_are_kept(recorded):
    # Between plan and apply somebody gave lab-02 to another cluster: its fresh mark wins over the plan's.
    log, now = recorded
    run = FakeRun(FOUND)
    planned = destroy.plan(run, templates=True)
    now["lab-02"] = dataclasses.replace(_vm("lab-02"), extra={MARK_CLUSTER: "other", MARK_ROLE: "node"})
    with pytest.raises(OwnershipError, match="refusing to delete VM 'lab-02': it belongs to cluster 'other'"):
        destroy.apply(run, planned)
    assert ("delete", "lab-02") not in log
    assert ("delete", "lab-01") in log  # its own mark still says ours
    assert ("delete", "lab-template-flatcar-1") not in log  # the template batch never starts after a failure


def test_nothing_of_ours_is_a_rule_check_and_no_deletion(recorded):
    log, _ = recorded
    run = FakeRun([_vm("lab-01", cluster="")])  # named like ours, never marked: somebody else's VM
    result = destroy.apply(run, destroy.plan(run, templates=True))
    assert log == [("drop rule", [])] and result.removed == []
