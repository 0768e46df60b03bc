"""Finding the datacenter, cluster, datastore, network and folder the cluster file names.

A missing object is an error that names it and lists what does exist, so a
typo costs one run, not a support ticket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyVmomi import vim

from vmcoreos.errors import VSphereError
from vmcoreos.settings import VSphereTarget
from vmcoreos.vsphere.session import Session


@dataclass
class Placement:
    datacenter: Any
    resource_pool: Any
    datastore: Any
    network: Any
    network_name: str
    folder: Any
    cluster_name: str
    folder_path: str = ""  # vsphere.folder as given; "" for the datacenter's VM folder


def _pick(kind: str, key: str, wanted: str | None, found: dict[str, Any]) -> Any:
    if wanted is None:
        if len(found) == 1:
            return next(iter(found.values()))
        listing = ", ".join(sorted(found)) or "none"
        raise VSphereError(f"more than one {kind} (or none) and vsphere.{key} is not set; pick one of: {listing}")
    if wanted not in found:
        listing = ", ".join(sorted(found)) or "none"
        raise VSphereError(f"{kind} {wanted!r} (vsphere.{key}) does not exist; found: {listing}")
    return found[wanted]


def _names(session: Session, root, kind) -> dict[str, Any]:
    return {props["name"]: obj for obj, props in session.retrieve_all(root, kind, ["name"]).items() if "name" in props}


def find_datacenter(session: Session, target: VSphereTarget):
    return _pick("datacenter", "datacenter", target.datacenter, _names(session, session.content.rootFolder, vim.Datacenter))


def locate(session: Session, target: VSphereTarget) -> Placement:
    dc = find_datacenter(session, target)
    props = session.retrieve([dc], ["vmFolder", "hostFolder", "datastoreFolder", "networkFolder"], vim.Datacenter)[dc]

    clusters = _names(session, props["hostFolder"], vim.ComputeResource)
    compute = _pick("cluster", "cluster", target.cluster, clusters)
    pool = session.retrieve([compute], ["resourcePool"], vim.ComputeResource)[compute]["resourcePool"]

    datastores = _names(session, props["datastoreFolder"], vim.Datastore)
    if target.datastore is not None and target.datastore not in datastores:
        _refuse_storage_pod(session, props["datastoreFolder"], target.datastore)
    datastore = _pick("datastore", "datastore", target.datastore, datastores)
    networks = _names(session, props["networkFolder"], vim.Network)
    network_name = target.network or ("VM Network" if "VM Network" in networks else None)
    network = _pick("network", "network", network_name, networks)
    folder = _find_folder(session, props["vmFolder"], target.folder)
    name = next(n for n, o in clusters.items() if o == compute)
    folder_path = "/".join(p for p in (target.folder or "").split("/") if p)
    return Placement(dc, pool, datastore, network, network_name or "", folder, name, folder_path)


def _refuse_storage_pod(session: Session, root, name: str) -> None:
    """A datastore cluster's name is refused by name: placing into one takes Storage DRS recommendations."""
    pods = _names(session, root, vim.StoragePod)
    if name in pods:
        members = session.retrieve([pods[name]], ["childEntity"], vim.StoragePod)[pods[name]].get("childEntity") or []
        names = [p.get("name") for p in session.retrieve(members, ["name"], vim.Datastore).values()]
        listing = ", ".join(sorted(n for n in names if n)) or "none"
        raise VSphereError(
            f"vsphere.datastore {name!r} is a datastore cluster (StoragePod), which vmcoreos does not place into;"
            f" name one of its datastores instead: {listing}"
        )


def _find_folder(session: Session, vm_folder, path: str | None):
    if not path:
        return vm_folder
    folder = vm_folder
    walked = []
    for part in [p for p in path.strip("/").split("/") if p]:
        children = session.retrieve([folder], ["childEntity"], vim.Folder)[folder].get("childEntity") or []
        subfolders = {
            p.get("name"): o
            for o, p in session.retrieve([c for c in children if isinstance(c, vim.Folder)], ["name"], vim.Folder).items()
        }
        if part not in subfolders:
            listing = ", ".join(sorted(subfolders)) or "none"
            where = "/".join(walked) or "the datacenter's VM folder"
            raise VSphereError(
                f"folder {path!r} (vsphere.folder) does not exist: no {part!r} in {where}; found: {listing}"
            )
        folder = subfolders[part]
        walked.append(part)
    return folder


def committed_bytes(session: Session, vm) -> int:
    """What a VM's files take on its datastores now: a thin disk's written blocks, not its capacity."""
    props = session.retrieve([vm], ["summary.storage.committed"], vim.VirtualMachine)[vm]
    return int(props.get("summary.storage.committed") or 0)


def free_space(session: Session, datastore) -> int:
    summary = session.retrieve([datastore], ["summary.freeSpace"], vim.Datastore)[datastore]
    return int(summary.get("summary.freeSpace") or 0)
