"""What a datastore is charged for the bytes a run writes, counted as vSphere counts them.

Thin disks take what is written; a datastore without thin provisioning (perFileThinProvisioningSupported
false) gives every disk its whole capacity. vSAN reports raw free space while its storage policy
writes every byte more than once: the default (FTT=1, RAID-1) twice. vmcoreos does not read the
policy through PBM; it assumes the default and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyVmomi import vim

from vmcoreos.vsphere.session import Session

# vSAN's default storage policy: one failure to tolerate by mirroring, so two copies of every byte.
VSAN_DEFAULT_FACTOR = 2


@dataclass(frozen=True)
class Room:
    free: int
    thin: bool  # disks can be thin here
    factor: int  # datastore bytes per byte a VM writes
    note: str | None = None  # what was assumed about the datastore, for the run to say


def room(session: Session, datastore) -> Room:
    props = session.retrieve([datastore], ["summary.freeSpace", "summary.type",
                                           "capability.perFileThinProvisioningSupported"], vim.Datastore)[datastore]
    free = int(props.get("summary.freeSpace") or 0)
    thin = props.get("capability.perFileThinProvisioningSupported") is not False  # unset: as most datastores
    if str(props.get("summary.type", "")).lower() == "vsan":
        return Room(free, thin, VSAN_DEFAULT_FACTOR,
                    "a vSAN datastore: counting every byte twice, as its default storage policy (FTT=1, RAID-1)"
                    " writes it; vmcoreos does not read the policy (PBM), so a policy with more copies needs more room")
    return Room(free, thin, 1)
