"""The privileges a run needs, per object, checked before anything is downloaded or uploaded.

Without this a user whose role lacks, say, VirtualMachine.Inventory.CreateFromExisting finds out
after a full upload, at the first clone. NEEDS is the one list: the check asks vCenter
(HasPrivilegeOnEntities) for each privilege on the object it is needed on, and docs/real-vcenter.md's
role table is role_table() (tests/vsphere/test_privileges.py keeps the two equal). The VM privileges
are checked on the folder the VMs go to: the template and nodes do not exist yet, and inherit its
permissions; an existing template of the cluster is asked for DeployTemplate itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pyVmomi import vim, vmodl

from vmcoreos.errors import ConfigError, VSphereError
from vmcoreos.vsphere.targets import Placement
from vmcoreos.vsphere.session import Session

DOCS = 'see docs/real-vcenter.md, "Privileges"'


@dataclass(frozen=True)
class Need:
    privilege: str
    on: str  # one of OBJECTS
    why: str
    when: str = ""  # "" always; "linked_clone" or "lock": only for runs that do that
    warn_only: bool = False  # missing: the run goes on without what it is for, and says so


OBJECTS = {
    "folder": "the VM folder (`vsphere.folder`)",
    "template": "the cluster's template, when it exists already",
    "pool": "the resource pool (`vsphere.resource_pool`)",
    "datastore": "the datastore",
    "network": "the network",
    "cluster": "the cluster",
}

NEEDS: tuple[Need, ...] = (
    Need("VApp.Import", "folder", "the image is imported as a VM in it"),
    Need("VirtualMachine.Inventory.Create", "folder", "the import creates a VM"),
    Need("VirtualMachine.Inventory.CreateFromExisting", "folder", "every node is a clone"),
    Need("VirtualMachine.Inventory.Delete", "folder", "removing nodes, and an unfinished import"),
    Need("VirtualMachine.Config.Rename", "folder", "an import verified as it uploads is renamed after"),
    Need("VirtualMachine.Config.AdvancedConfig", "folder", "guestinfo and vmcoreos' marks (extraConfig)"),
    Need("VirtualMachine.Config.CPUCount", "folder", "the clone spec sets node.cpus; a cpus change reconfigures nodes"),
    Need("VirtualMachine.Config.Memory", "folder", "the clone spec sets node.memory_mb; a memory change reconfigures nodes"),
    Need("VirtualMachine.Config.EditDevice", "folder", "the clone spec sets the first NIC's MAC (guest/macs.py) and network"),
    Need("VirtualMachine.Provisioning.MarkAsTemplate", "folder", "the import becomes the template"),
    Need("VirtualMachine.Provisioning.MarkAsVM", "folder", "the template is a VM again for its linked-clone snapshot",
         when="linked_clone"),
    Need("VirtualMachine.Provisioning.DeployTemplate", "folder", "cloning the template imported there"),
    Need("VirtualMachine.Provisioning.DeployTemplate", "template", "cloning it"),
    Need("VirtualMachine.Interact.PowerOn", "folder", "booting nodes"),
    Need("VirtualMachine.Interact.PowerOff", "folder", "a DHCP node's second boot, removing nodes"),
    Need("VirtualMachine.State.CreateSnapshot", "folder", "the snapshot linked clones share", when="linked_clone"),
    Need("Folder.Create", "folder", "the vSphere lock folder", when="lock"),
    Need("Folder.Delete", "folder", "the vSphere lock folder", when="lock"),
    Need("Global.SetCustomField", "folder", "the lock's owner and expiry", when="lock"),
    Need("VApp.Import", "pool", "the import goes into it"),
    Need("Resource.AssignVMToPool", "pool", "imports and clones go into it"),
    Need("Datastore.AllocateSpace", "datastore", "the template's and the nodes' disks"),
    Need("Network.Assign", "network", "the nodes' NIC"),
    Need("Host.Inventory.ModifyCluster", "cluster", "DRS anti-affinity rules keeping etcd members apart",
         warn_only=True),
)


def role_table() -> str:
    """The Markdown table docs/real-vcenter.md shows, from NEEDS."""
    rows = ["| privilege | checked on | what for |", "|---|---|---|"]
    for need in NEEDS:
        why = need.why
        if need.when == "linked_clone":
            why += " (only with `node.linked_clone: true`)"
        elif need.when == "lock":
            why += " (only when no etcd answers, e.g. a new cluster)"
        if need.warn_only:
            why += "; missing, the run warns and goes on without them"
        rows.append(f"| `{need.privilege}` | {OBJECTS[need.on]} | {why} |")
    return "\n".join(rows) + "\n"


def needed(placement: Placement, *, linked_clone: bool, lock: bool = False, templates=(),
           cluster: Any = None) -> list[tuple[Any, str, Need]]:
    """(entity, what to call it, need) for every privilege a run needs; templates: the cluster's (VmInfo)."""
    folder = placement.folder_path or "the datacenter's VM folder"
    objects: dict[str, list[tuple[Any, str]]] = {
        "folder": [(placement.folder, f"folder {folder}")],
        "template": [(t.ref, f"template {t.name}") for t in templates],
        "pool": [(placement.resource_pool, f"the resource pool of {placement.cluster_name}")],
        "datastore": [(placement.datastore, "the datastore")],
        "network": [(placement.network, f"network {placement.network_name}")],
        "cluster": [(cluster, f"cluster {placement.cluster_name}")] if cluster is not None else [],
    }
    wanted = {"", "linked_clone" if linked_clone else "", "lock" if lock else ""}
    return [(entity, what, need) for need in NEEDS if need.when in wanted for entity, what in objects[need.on]]


def _cluster(placement: Placement):
    """Where DRS rules are made: the placement's cluster; None for a standalone host's compute resource."""
    compute = getattr(placement, "compute", None)
    return compute if isinstance(compute, vim.ClusterComputeResource) else None


def require(session: Session, placement: Placement, *, linked_clone: bool, lock: bool = False, templates=(),
            warn: Callable[[str], None] | None = None) -> None:
    """Raise ConfigError (exit 2) with one line per missing privilege, naming it and its object.

    A missing warn_only privilege is told to warn instead, and the run goes on.
    """
    wanted = needed(placement, linked_clone=linked_clone, lock=lock, templates=templates,
                    cluster=_cluster(placement))
    entities = list({e._moId: e for e, _, _ in wanted}.values())
    ids = sorted({n.privilege for _, _, n in wanted})
    manager = session.content.authorizationManager
    try:
        key = session.content.sessionManager.currentSession.key
        answers = manager.HasPrivilegeOnEntities(entity=entities, sessionId=key, privId=ids)
    except vmodl.MethodFault as exc:
        raise VSphereError(f"vCenter would not say which privileges this user has: {exc.msg}") from None
    granted = {
        (a.entity._moId, p.privId): p.isGranted for a in answers or [] for p in a.privAvailability or []
    }
    user = session.conn.username
    missing: list[str] = []
    for entity, what, need in wanted:
        if granted.get((entity._moId, need.privilege), False):
            continue
        line = f"{need.privilege} on {what} ({entity._moId}): {need.why}"
        if need.warn_only:
            if warn is not None:
                warn(f"{user!r} lacks the privilege {line}; the run goes on without them ({DOCS})")
            continue
        if line not in missing:
            missing.append(line)
    if len(missing) == 1:
        raise ConfigError(f"{user!r} lacks the privilege {missing[0]}; grant it in a role on that object"
                          f" or deploy as a user who has it ({DOCS})")
    if missing:
        raise ConfigError(
            f"{user!r} lacks {len(missing)} privileges this run needs; grant them in a role on those objects"
            f" or deploy as a user who has them ({DOCS}):",
            findings=missing,
        )
