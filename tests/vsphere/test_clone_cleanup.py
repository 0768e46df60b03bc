"""After a clone fails or is interrupted, only the VM its task made is deleted, never a VM found by its name.

vSphere is faked at vms.py's own seams (the wait, the listing, refresh, destroy,
the task lookups): the faults here are ones the simulator cannot make (a clone
that fails on the name while an earlier, successful clone of it exists).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pyVmomi import vim

from vmcoreos.errors import VSphereError
from vmcoreos.vsphere import vms

CLUSTER = "lab"


class Template:
    """A template whose CloneVM_Task hands out task-1, task-2, ..."""

    def __init__(self):
        self.sent = []

    def CloneVM_Task(self, folder, name, spec):
        self.sent.append(name)
        return vim.Task(f"task-{len(self.sent)}")


def _vm(moref: str, name: str, cluster: str | None = CLUSTER) -> vms.VmInfo:
    extra = {vms.MARK_CLUSTER: cluster, vms.MARK_ROLE: "node"} if cluster else {}
    return vms.VmInfo(vim.VirtualMachine(moref), name, False, "poweredOn", None, None, extra)


@pytest.fixture
def bed(mocker):
    """The seams of vms.py, faked: what was destroyed, and the outcome each task reports after the cancel."""
    state = SimpleNamespace(destroyed=[], outcome={}, by_name={}, refreshed={})
    template = vms.VmInfo(Template(), "lab-template", True, "poweredOff", None, None)

    def outcomes(session, started, timeout):
        return {t: state.outcome.get(t._moId, ("error", None)) for t in started}

    fake_tasks = SimpleNamespace(outcomes=outcomes, find_clone=lambda *a, **k: None,
                                 in_flight=SimpleNamespace(tracking=lambda started: _nothing()))
    mocker.patch.object(vms, "tasks", fake_tasks, create=True)
    mocker.patch.object(vms, "wait_tasks", side_effect=VSphereError("cloning lab-01 failed: DuplicateName"))
    mocker.patch.object(vms, "list_vms", side_effect=lambda s, p, names=None, **k: [
        vm for n, vm in state.by_name.items() if names is None or n in names])
    mocker.patch.object(vms, "refresh", side_effect=lambda s, vm: state.refreshed.get(vm.moref, vm))
    mocker.patch.object(vms, "destroy", side_effect=lambda s, vm, cluster: state.destroyed.append(vm.moref))
    state.template = template
    return state


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _clone(bed):
    placement = SimpleNamespace(folder=vim.Folder("group-v3"))
    return vms.clone_many(object(), bed.template, [("lab-01", object())], placement, cluster=CLUSTER)


def test_a_failed_clone_leaves_the_vm_of_that_name_alone(bed):
    # lab-01 exists, ours, from an earlier clone; this clone of it failed on the name and made nothing.
    bed.by_name["lab-01"] = _vm("vm-1", "lab-01")
    with pytest.raises(VSphereError, match="DuplicateName"):
        _clone(bed)
    assert bed.destroyed == []


def test_the_vm_a_clone_made_before_its_cancel_took_is_deleted_and_only_that(bed):
    # Interrupted: the cancel came too late, the clone made vm-7; a namesake vm-1 is not the task's.
    bed.by_name["lab-01"] = _vm("vm-1", "lab-01")
    bed.outcome["task-1"] = ("success", vim.VirtualMachine("vm-7"))
    bed.refreshed["vm-7"] = _vm("vm-7", "lab-01")
    with pytest.raises(VSphereError):
        _clone(bed)
    assert bed.destroyed == ["vm-7"]


def test_what_a_clone_made_is_kept_when_it_lacks_our_marks(bed):
    bed.outcome["task-1"] = ("success", vim.VirtualMachine("vm-7"))
    bed.refreshed["vm-7"] = _vm("vm-7", "lab-01", cluster=None)
    with pytest.raises(VSphereError):
        _clone(bed)
    assert bed.destroyed == []
