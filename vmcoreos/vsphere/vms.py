"""Node VMs and templates: ownership marks, listing, clone, power, destroy.

Every VM and template we create carries marks in its extraConfig. Anything
that would power off, change or delete a VM checks the mark first, so a VM
that merely shares a name with a node is never touched.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

from pyVmomi import vim, vmodl

from vmcoreos.errors import VSphereError
from vmcoreos.vsphere import guestnet, tasks
from vmcoreos.vsphere.targets import Placement
from vmcoreos.vsphere.session import ConnectionLost, Session
from vmcoreos.vsphere.vminfo import (  # noqa: F401  (the marks and VmInfo are read through vms by callers)
    MARK_CLUSTER, MARK_DIGEST, MARK_DISTRO, MARK_ETCD_CLUSTER_ID, MARK_ROLE, MARK_SECTIONS, MARK_SHA512, MARK_SIGNED,
    MARK_VERSION,
    VmInfo, marks, require_owned,
)
from vmcoreos.vsphere.waits import TASK_STALL, wait_task, wait_tasks

VM_PROPS = [
    "name",
    "config.template",
    "config.instanceUuid",
    "config.extraConfig",
    "runtime.powerState",
    "guest.toolsRunningStatus",
    "guest.ipAddress",
    "guest.net",
    "config.hardware.numCPU",
    "config.hardware.memoryMB",
    "network",
    "runtime.host",
    "datastore",
]


def extra_config(options) -> dict[str, str]:
    """A VM's extraConfig options as a dict."""
    # vSphere may list a key more than once (some hosts append); the last value wins, as in the VMX.
    out: dict[str, str] = {}
    for opt in options or []:
        out[opt.key] = "" if opt.value is None else str(opt.value)
    return out


def _info(ref, props: dict) -> VmInfo:
    return VmInfo(
        ref=ref,
        name=props.get("name", ""),
        template=bool(props.get("config.template")),
        power=str(props.get("runtime.powerState", "")),
        tools=props.get("guest.toolsRunningStatus"),
        # Never guest.ipAddress as is: it can be link-local or an overlay's (vsphere/guestnet.py).
        ip=guestnet.node_address(props.get("guest.net"), props.get("guest.ipAddress")),
        extra=extra_config(props.get("config.extraConfig")),
        instance_uuid=props.get("config.instanceUuid") or None,
        cpus=props.get("config.hardware.numCPU"),
        memory_mb=props.get("config.hardware.memoryMB"),
        networks=tuple(_moref(n) for n in props.get("network") or ()),
        host=props.get("runtime.host"),
        datastores=tuple(props.get("datastore") or ()),
    )


def _moref(obj) -> str:
    return getattr(obj, "_moId", "") or str(obj)


def list_vms(
    session: Session, placement: Placement, names: set[str] | None = None, *, predicate=None
) -> list[VmInfo]:
    """VMs directly in the placement folder whose name is in names (or passes predicate), in two round trips.

    Only the folder's own children count, never its subfolders nor the rest of
    the datacenter: every node and template is created right there, and a VM
    someone put elsewhere under a node's name must not stand in for it.
    Names are read for every VM first, and the heavier properties (extraConfig)
    only for the few that match, which keeps this cheap on a large vCenter.
    Two matches of one name are refused rather than one hiding the other.
    """
    by_name = session.retrieve_all(placement.folder, vim.VirtualMachine, ["name"], recursive=False)

    def wanted(name) -> bool:
        if names is not None and name not in names:
            return False
        return predicate is None or predicate(name)

    refs = [r for r, p in by_name.items() if wanted(p.get("name"))]
    found = [_info(r, p) for r, p in session.retrieve(refs, VM_PROPS, vim.VirtualMachine).items()]
    _refuse_duplicates(found, placement)
    return found


def _refuse_duplicates(found: list[VmInfo], placement: Placement) -> None:
    seen: dict[str, VmInfo] = {}
    for vm in sorted(found, key=lambda v: v.moref):
        first = seen.setdefault(vm.name, vm)
        if first is not vm:
            where = placement.folder_path or "the datacenter's VM folder"
            raise VSphereError(
                f"two VMs are named {vm.name!r} in {where} ({first.moref} and {vm.moref}); vmcoreos cannot tell"
                " which one is its own: rename or remove the one it did not create, then run again"
            )


def refresh(session: Session, vm: VmInfo) -> VmInfo:
    props = session.retrieve([vm.ref], VM_PROPS, vim.VirtualMachine).get(vm.ref)
    return _info(vm.ref, props) if props is not None else vm


def option_values(values: dict[str, str]) -> list:
    return [vim.option.OptionValue(key=k, value=v) for k, v in values.items()]


def clone_spec(placement: Placement, *, cpus: int, memory_mb: int, extra: dict[str, str], linked_snapshot=None,
               host=None, datastore=None, devices: tuple = ()):
    """Everything a node needs in the clone itself: one task per node, no reconfigure after.

    host, datastore: where placement put this node (default: the placement's import host and first datastore).
    devices: device edits for the clone (nic_edit: its first NIC's MAC, which its config names, and the
    network it is put on when the template's is not vsphere.network).
    """
    relocate = vim.vm.RelocateSpec(pool=placement.resource_pool, datastore=datastore or placement.datastore,
                                   host=host or placement.host)
    if linked_snapshot is not None:
        relocate.diskMoveType = "createNewChildDiskBacking"
    config = vim.vm.ConfigSpec(
        numCPUs=cpus,
        memoryMB=memory_mb,
        extraConfig=option_values(extra),
        # No vApp options, so vSphere hands the guest no OVF environment that would
        # shadow the extraConfig guestinfo keys for coreos-cloudinit.
        vAppConfigRemoved=True,
        deviceChange=list(devices),
    )
    # powerOn=False: the tool powers nodes on (vsphere/power.py), one owner. vCenter would power the clone
    # on in a task of its own after the clone task, racing the tool's own PowerOn (InvalidPowerState).
    return vim.vm.CloneSpec(
        location=relocate, config=config, powerOn=False, template=False, snapshot=linked_snapshot
    )


def first_nic(session: Session, vm: VmInfo):
    """The VM's first network card (lowest device key): the one a node's config gives its address."""
    props = session.retrieve([vm.ref], ["config.hardware.device"], vim.VirtualMachine).get(vm.ref) or {}
    nics = [d for d in props.get("config.hardware.device") or [] if isinstance(d, vim.vm.device.VirtualEthernetCard)]
    return min(nics, key=lambda d: d.key) if nics else None


def nic_edit(nic, mac: str | None = None, backing=None):
    """An edit giving the clone's copy of nic this MAC (addressType manual: vCenter keeps it as set) and,
    given one, this network backing; None when there is nothing to change.

    A copy of the device, not nic itself: every node's spec carries its own MAC.
    """
    if mac is None and backing is None:
        return None
    device = type(nic)()
    for prop in nic._GetPropertyList():
        setattr(device, prop.name, getattr(nic, prop.name))
    if mac is not None:
        device.addressType = "manual"
        device.macAddress = mac
    if backing is not None:
        device.backing = backing
    return vim.vm.device.VirtualDeviceSpec(operation="edit", device=device)


def network_backing(session: Session, template: VmInfo, nic, placement: Placement):
    """The backing that puts a clone of template on placement.network (a port group, a distributed port
    group or an opaque network), as govc's `vm.clone -net` does; None when the template is on it already,
    as it is unless vsphere.network changed since the import.

    A template without a NIC cannot put a node on any network: that stops the run, naming the network.
    """
    if _moref(placement.network) in template.networks:
        return None
    if nic is None:
        raise VSphereError(f"template {template.name} has no network card, so its clones cannot be put on network"
                           f" {placement.network_name!r} (vsphere.network); delete the template to import it again")
    network = placement.network
    if isinstance(network, vim.dvs.DistributedVirtualPortgroup):
        props = session.retrieve([network], ["key", "config.distributedVirtualSwitch"], vim.dvs.DistributedVirtualPortgroup)
        pg = props.get(network) or {}
        switch = pg.get("config.distributedVirtualSwitch")
        uuid = (session.retrieve([switch], ["uuid"], vim.DistributedVirtualSwitch).get(switch) or {}).get("uuid") if switch else None
        if not uuid or not pg.get("key"):
            raise VSphereError(f"cannot read the switch of distributed port group {placement.network_name!r}"
                               " (vsphere.network), so no node can be put on it; check the user may read the switch")
        port = vim.dvs.PortConnection(portgroupKey=pg["key"], switchUuid=uuid)
        return vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo(port=port)
    if isinstance(network, vim.OpaqueNetwork):
        summary = (session.retrieve([network], ["summary"], vim.OpaqueNetwork).get(network) or {}).get("summary")
        return vim.vm.device.VirtualEthernetCard.OpaqueNetworkBackingInfo(
            opaqueNetworkId=summary.opaqueNetworkId, opaqueNetworkType=summary.opaqueNetworkType)
    return vim.vm.device.VirtualEthernetCard.NetworkBackingInfo(deviceName=placement.network_name, network=network)


def set_hardware(session: Session, vm: VmInfo, cpus: int, memory_mb: int, cluster: str) -> None:
    """CPUs and memory of a powered-off VM (hot-add needs the guest's support and never lowers either)."""
    require_owned(vm, cluster, "reconfigure")
    task = vm.ref.ReconfigVM_Task(spec=vim.vm.ConfigSpec(numCPUs=cpus, memoryMB=memory_mb))
    _wait(session, [task], f"setting {vm.name} to {cpus} CPUs and {memory_mb} MB")


LINKED_BASE = "vmcoreos-linked-clone-base"  # the template snapshot linked clones share


def linked_base(session: Session, vm: VmInfo) -> Any | None:
    """The template's snapshot named LINKED_BASE, if it has one."""
    props = session.retrieve([vm.ref], ["snapshot"], vim.VirtualMachine).get(vm.ref) or {}
    pending = list(getattr(props.get("snapshot"), "rootSnapshotList", None) or [])
    while pending:
        tree = pending.pop()
        if tree.name == LINKED_BASE:
            return tree.snapshot
        pending.extend(tree.childSnapshotList or [])
    return None


def snapshot_linked_base(session: Session, vm: VmInfo, placement: Placement, cluster: str) -> Any:
    """LINKED_BASE on vm, taken now if missing (once per template, on first use).

    vSphere takes no snapshot of a template, so a template is turned back into
    a VM for the moment (on its own host: outside DRS, MarkAsVirtualMachine needs one).
    """
    require_owned(vm, cluster, "snapshot")
    found = linked_base(session, vm)
    if found is not None:
        return found
    try:
        if vm.template:
            host = session.retrieve([vm.ref], ["runtime.host"], vim.VirtualMachine)[vm.ref].get("runtime.host")
            vm.ref.MarkAsVirtualMachine(pool=placement.resource_pool, host=host)
        try:
            task = vm.ref.CreateSnapshot_Task(
                name=LINKED_BASE, description="vmcoreos linked clones share this snapshot's disks; keep it",
                memory=False, quiesce=False,
            )
            return wait_task(session, task, what=f"snapshotting {vm.name} for linked clones")
        finally:
            if vm.template:
                vm.ref.MarkAsTemplate()
    except vmodl.MethodFault as exc:
        raise VSphereError(f"could not snapshot {vm.name} for linked clones: {exc.msg}") from None


def _start_clone(session: Session, template: VmInfo, name: str, placement: Placement, spec, cluster: str, *,
                 known: list = (), note: Callable[[str], None] | None = None) -> Any:
    """The clone's task, or the VM itself when a lost connection hid that an earlier request made it.

    After a lost connection the request may or may not have reached vCenter.
    A full clone registers its VM only once the disks are copied, so a VM
    listing would see nothing while the clone runs, and a second CloneVM_Task
    would fail on the name; so the running task is looked for first
    (vsphere/tasks.py tells how), and the clone is sent again only when
    neither a task nor a VM of that name exists.
    """
    try:
        return template.ref.CloneVM_Task(folder=placement.folder, name=name, spec=spec)
    except ConnectionLost:
        time.sleep(1)  # a request vCenter was still reading becomes its task meanwhile
        task = tasks.find_clone(session, template.ref, name, placement.folder, known=known)
        if task is not None:
            if note is not None:
                note(f"{name}: the connection dropped while cloning; waiting on the clone vCenter is running")
            return task
        same = [v for v in list_vms(session, placement, {name}) if not v.template]
        for vm in same:
            require_owned(vm, cluster, "clone over")  # a VM of ours (the clone ended meanwhile), or refused
            return vm.ref
        return template.ref.CloneVM_Task(folder=placement.folder, name=name, spec=spec)


def clone_many(session: Session, template: VmInfo, jobs: list[tuple[str, Any]], placement: Placement, *,
               cluster: str, stall: float = TASK_STALL, note: Callable[[str], None] | None = None) -> list[Any]:
    """Clone template once per (name, spec): every task sent, then one wait over them all (not one per VM).

    The wait has no total limit: full clones take minutes. It gives up when
    none of the clones made progress for `stall` seconds (wait.task_stall).
    note: told when a lost connection was recovered from (the caller's reporter).
    """
    started: list[Any] = []
    try:
        for name, spec in jobs:
            known = [t for t in started if isinstance(t, vim.Task)]
            started.append(_start_clone(session, template, name, placement, spec, cluster, known=known, note=note))
        running = [(name, t) for (name, _), t in zip(jobs, started) if isinstance(t, vim.Task)]
        done = iter(_wait(session, [t for _, t in running], f"cloning {', '.join(n for n, _ in jobs)} from {template.name}",
                          stall=stall, names=[n for n, _ in running]))
        return [next(done) if isinstance(t, vim.Task) else t for t in started]
    except BaseException:
        # Interrupted or one failed: cancel what still runs and remove what it made, if ours;
        # the clones that had finished are whole nodes, kept as a run that fails later keeps them.
        _remove_half_made(session, [t for t in started if isinstance(t, vim.Task) and _unfinished(t)], cluster)
        raise


def _unfinished(task) -> bool:
    try:
        return task.info.state != "success"
    except Exception:
        return True


CANCEL_WAIT = 5.0  # how long a canceled clone gets to end before cleanup moves on (an interrupt has 10 s in all)


def _remove_half_made(session: Session, started: list, cluster: str) -> None:
    """Cancel the clones that still run; delete what a clone made anyway (it ended before the cancel).

    Only the VM a task itself made (its result) is deleted, and only if it
    carries our marks: never "the VM of that name", which may be the one an
    earlier, successful clone made. A failed or canceled clone leaves no VM:
    vCenter rolls back what it had begun.
    """
    for task in started:
        with contextlib.suppress(Exception):
            task.CancelTask()
    try:
        ended = tasks.outcomes(session, started, timeout=CANCEL_WAIT)
    except Exception:
        return
    for state, result in ended.values():
        if state != "success" or not isinstance(result, vim.VirtualMachine):
            continue
        with contextlib.suppress(Exception):
            made = refresh(session, VmInfo(result, "", False, "", None, None))
            if made.owned_by(cluster) and not made.template:
                destroy(session, made, cluster)


def _wait(session: Session, started: list, what: str, *, stall: float = TASK_STALL,
          names: list[str] | None = None) -> list:
    """wait_tasks, with the tasks known to an interrupt (which cancels them) meanwhile."""
    with tasks.in_flight.tracking(started):
        return wait_tasks(session, started, stall=stall, what=what, names=names)


def reconfigure(session: Session, vm: VmInfo, extra: dict[str, str], cluster: str) -> None:
    reconfigure_many(session, [(vm, extra)], cluster)


def reconfigure_many(session: Session, changes: list[tuple[VmInfo, dict[str, str]]], cluster: str) -> None:
    """Set extraConfig keys on several VMs, with one wait over all their tasks."""
    for vm, _ in changes:
        require_owned(vm, cluster, "reconfigure")
    started = [vm.ref.ReconfigVM_Task(spec=vim.vm.ConfigSpec(extraConfig=option_values(extra))) for vm, extra in changes]
    _wait(session, started, f"reconfiguring {', '.join(vm.name for vm, _ in changes)}")


def rename_and_mark(session: Session, vm: VmInfo, name: str, extra: dict[str, str], cluster: str) -> None:
    """A new name and extraConfig keys in one reconfigure task (one wait)."""
    require_owned(vm, cluster, "rename")
    task = vm.ref.ReconfigVM_Task(spec=vim.vm.ConfigSpec(name=name, extraConfig=option_values(extra)))
    wait_task(session, task, what=f"renaming {vm.name} to {name}")


def refresh_many(session: Session, found: list[VmInfo]) -> list[VmInfo]:
    """refresh() for several VMs in one request."""
    props = session.retrieve([vm.ref for vm in found], VM_PROPS, vim.VirtualMachine) if found else {}
    return [_info(vm.ref, props[vm.ref]) if vm.ref in props else vm for vm in found]


def power_off(session: Session, vm: VmInfo, cluster: str) -> None:
    require_owned(vm, cluster, "power off")
    if vm.power == "poweredOn":
        _wait(session, [vm.ref.PowerOffVM_Task()], f"powering off {vm.name}")


def destroy(session: Session, vm: VmInfo, cluster: str) -> None:
    require_owned(vm, cluster, "delete")
    if vm.power == "poweredOn" and not vm.template:
        _wait(session, [vm.ref.PowerOffVM_Task()], f"powering off {vm.name}")
    _wait(session, [vm.ref.Destroy_Task()], f"deleting {vm.name}")
