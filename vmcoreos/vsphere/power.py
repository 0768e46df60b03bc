"""Powering nodes on: the tool is the one owner (vsphere/vms.py's clone spec never asks vCenter to).

vCenter powers a clone whose spec says powerOn on in a task of its own after the clone task, and a
second power-on sent meanwhile fails with InvalidPowerState (coreos-facts §8).
"""

from __future__ import annotations

from pyVmomi import vim

from vmcoreos.errors import VSphereError
from vmcoreos.vsphere import tasks, vms
from vmcoreos.vsphere.session import Session
from vmcoreos.vsphere.vms import VmInfo
from vmcoreos.vsphere.waits import wait_tasks


def on(session: Session, vm: VmInfo) -> None:
    on_many(session, [vm])


def on_many(session: Session, found: list[VmInfo]) -> None:
    """Power on every VM that is off, with one wait over all their tasks; the tool is the one owner.

    vCenter may power one on meanwhile all the same (HA, the UI): InvalidPowerState is then no failure
    if a re-read finds the VM on."""
    off = [vm for vm in found if vm.power != "poweredOn"]
    if not off:
        return
    started, raced = [], []
    for vm in off:
        try:
            started.append((vm, vm.ref.PowerOnVM_Task()))
        except vim.fault.InvalidPowerState:
            raced.append(vm)
    with tasks.in_flight.tracking([t for _, t in started]):
        results = wait_tasks(session, [t for _, t in started], what=f"powering on {', '.join(v.name for v in off)}",
                             tolerate=(vim.fault.InvalidPowerState,))
    raced += [vm for (vm, _), r in zip(started, results) if isinstance(r, vim.fault.InvalidPowerState)]
    still = [vm for vm in vms.refresh_many(session, raced) if vm.power != "poweredOn"]
    if still:
        names = ", ".join(vm.name for vm in still)
        raise VSphereError(f"vCenter refused to power on {names} (InvalidPowerState) and it is {still[0].power};"
                           " look at its recent tasks in vCenter and run again")
