"""The privileges a run needs, checked on the objects it will touch before anything is downloaded or uploaded.

Without this a user whose role lacks, say, VirtualMachine.Config.AdvancedConfig
finds out after a full upload. The VM privileges are checked on the folder the
VMs go to: the template and nodes do not exist yet, and they inherit its permissions.
"""

from __future__ import annotations

from pyVmomi import vmodl

from vmcoreos.errors import ConfigError, VSphereError
from vmcoreos.vsphere.inventory import Placement
from vmcoreos.vsphere.session import Session

FOLDER = (
    "VApp.Import",
    "VirtualMachine.Inventory.Create",
    "VirtualMachine.Inventory.Delete",
    "VirtualMachine.Provisioning.DeployTemplate",
    "VirtualMachine.Provisioning.MarkAsTemplate",
    "VirtualMachine.Config.AdvancedConfig",
    "VirtualMachine.Config.EditDevice",  # the clone spec sets the first NIC's MAC (guest/macs.py)
    "VirtualMachine.Interact.PowerOn",
    "VirtualMachine.Interact.PowerOff",
)
LINKED_CLONE = ("VirtualMachine.State.CreateSnapshot",)
# The vSphere lock of a cluster with no etcd yet (vsphere/folderlock.py): the lock folder is created in,
# and deleted from, the cluster's folder, and its owner is written as a custom attribute value.
LOCK = ("Folder.Create", "Folder.Delete", "Global.SetCustomField")
POOL = ("VApp.Import", "Resource.AssignVMToPool")
DATASTORE = ("Datastore.AllocateSpace",)
NETWORK = ("Network.Assign",)


def needed(placement: Placement, *, linked_clone: bool, lock: bool = False) -> list[tuple[object, str, tuple[str, ...]]]:
    """(entity, what to call it, privilege IDs) for every object a deploy touches (lock: it takes the vSphere lock)."""
    folder = placement.folder_path or "the datacenter's VM folder"
    return [
        (placement.folder, f"folder {folder}",
         FOLDER + (LINKED_CLONE if linked_clone else ()) + (LOCK if lock else ())),
        (placement.resource_pool, f"the resource pool of {placement.cluster_name}", POOL),
        (placement.datastore, "the datastore", DATASTORE),
        (placement.network, f"network {placement.network_name}", NETWORK),
    ]


def require(session: Session, placement: Placement, *, linked_clone: bool, lock: bool = False) -> None:
    """Raise ConfigError (exit 2) naming the first privilege missing and the object it is missing on."""
    wanted = needed(placement, linked_clone=linked_clone, lock=lock)
    ids = sorted({p for _, _, privs in wanted for p in privs})
    manager = session.content.authorizationManager
    try:
        key = session.content.sessionManager.currentSession.key
        answers = manager.HasPrivilegeOnEntities(entity=[e for e, _, _ in wanted], sessionId=key, privId=ids)
    except vmodl.MethodFault as exc:
        raise VSphereError(f"vCenter would not say which privileges this user has: {exc.msg}") from None
    granted = {
        (a.entity._moId, p.privId): p.isGranted for a in answers or [] for p in a.privAvailability or []
    }
    user = session.conn.username
    for entity, what, privs in wanted:
        for priv in privs:
            if not granted.get((entity._moId, priv), False):
                raise ConfigError(
                    f"{user!r} lacks the privilege {priv} on {what} ({entity._moId}); grant it in a role on that"
                    " object (see docs/real-vcenter.md, \"Privileges\") or deploy as a user who has it"
                )
