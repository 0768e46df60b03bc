"""Finding the datacenter, cluster, datastore, network and folder the cluster file names.

A missing object is an error that names it and lists what does exist, so a
typo costs one run, not a support ticket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyVmomi import vim

from vmcoreos.errors import ConfigError, VSphereError
from vmcoreos.settings import VSphereTarget
from vmcoreos.vsphere import topology
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
    # The host the template import goes to: vsphere.host, or one chosen on a cluster without DRS.
    # None lets DRS (or a standalone host's own resource) place it. Each clone's host is placement's choice.
    host: Any = None
    topology: topology.Topology | None = None  # usable hosts, datastores, DRS: what node placement chooses from
    compute: Any = None  # the cluster (or a standalone host's compute resource) vsphere.cluster names


def _names(session: Session, root, kind) -> dict[str, Any]:
    return {props["name"]: obj for obj, props in session.retrieve_all(root, kind, ["name"]).items() if "name" in props}


def _path(session: Session, obj, stop) -> str:
    """obj's inventory path below stop (a datacenter's folder), e.g. "lab/DC0_DVPG0"."""
    parts = []
    while obj is not None and obj != stop:
        props = session.retrieve([obj], ["name", "parent"], vim.ManagedEntity).get(obj) or {}
        parts.append(props.get("name", "?"))
        obj = props.get("parent")
    return "/".join(reversed(parts))


def _labels(session: Session, obj, root) -> list[str]:
    """The names a user may give obj by: its inventory path, and for a port group also switch/portgroup."""
    labels = [_path(session, obj, root)]
    if isinstance(obj, vim.dvs.DistributedVirtualPortgroup):
        props = session.retrieve([obj], ["name", "config.distributedVirtualSwitch"], vim.dvs.DistributedVirtualPortgroup)[obj]
        switch = props.get("config.distributedVirtualSwitch")
        if switch is not None:
            switch_name = session.retrieve([switch], ["name"], vim.ManagedEntity)[switch].get("name")
            labels.append(f"{switch_name}/{props.get('name')}")
    return labels


def _choose(session: Session, kind: str, key: str, wanted: str | None, root, vim_kind, default: str | None = None,
            origin: str | None = None, narrow=None):
    """The one object of vim_kind below root that wanted names (a name or a path); ambiguity lists paths.

    narrow(candidates): of several that match, the ones that can serve (a port group on the cluster's hosts);
    when it leaves exactly one, that one is meant.
    """
    # By moref: the same object can be listed twice (vcsim lists datacenter.network's first twice).
    found = {obj: props.get("name") for obj, props in session.retrieve_all(root, vim_kind, ["name"]).items()}
    where = origin or f"vsphere.{key}"  # a GOVC_* variable, when it supplied the value
    name = wanted if wanted is not None else default
    if name is None:
        if len(found) == 1:
            return next(iter(found))
        listing = ", ".join(sorted(_path(session, o, root) for o in found)) or "none"
        raise VSphereError(f"more than one {kind} (or none) and vsphere.{key} is not set; pick one of: {listing}")
    base = name.rstrip("/").rsplit("/", 1)[-1]
    same = [o for o, n in found.items() if n == base]
    if "/" in name.rstrip("/"):  # a path; "/DC0" is the one directly below the root
        same = [o for o in same if name.strip("/") in _labels(session, o, root)]
    if len(same) > 1 and narrow is not None and len(narrow(same)) == 1:
        return narrow(same)[0]
    if len(same) == 1:
        return same[0]
    if not same:
        listing = ", ".join(sorted({n for n in found.values() if n})) or "none"
        raise VSphereError(f"{kind} {name!r} ({where}) does not exist; found: {listing}")
    listing = "; ".join(sorted(" or ".join(_labels(session, o, root)) for o in same))
    raise VSphereError(
        f"{kind} {name!r} ({where}) resolves to {len(same)} objects: {listing};"
        f" set vsphere.{key} to one of these paths"
    )


def find_datacenter(session: Session, target: VSphereTarget):
    """By name, or by path (lab/DC0) when folders hold two datacenters of one name: never one for the other."""
    return _choose(session, "datacenter", "datacenter", target.datacenter, session.content.rootFolder, vim.Datacenter,
                   origin=target.origin("datacenter"))


def refuse_standalone_esxi(session: Session) -> None:
    """A host agent (ESXi without vCenter) cannot clone, and the tool clones every node from a template."""
    if getattr(session.content.about, "apiType", None) == "HostAgent":
        raise ConfigError(
            f"{session.conn.host} is a standalone ESXi host, not a vCenter: ESXi alone cannot clone VMs"
            " or keep templates, and every node is cloned from one; point --url at the vCenter that manages it"
        )


def locate(session: Session, target: VSphereTarget) -> Placement:
    refuse_standalone_esxi(session)
    dc = find_datacenter(session, target)
    props = session.retrieve([dc], ["vmFolder", "hostFolder", "datastoreFolder", "networkFolder"], vim.Datacenter)[dc]

    compute = _choose(session, "cluster", "cluster", target.cluster, props["hostFolder"], vim.ComputeResource,
                      origin=target.origin("cluster"))
    cprops = session.retrieve([compute], ["name", "resourcePool", "host", "configurationEx"], vim.ComputeResource)[compute]
    pool = _find_pool(session, cprops["resourcePool"], target.resource_pool)

    datastores = [_datastore(session, props["datastoreFolder"], name, target) for name in target.datastore_names]
    if len(set(datastores)) != len(datastores):
        raise VSphereError(f"vsphere.datastores {', '.join(map(str, target.datastore_names))} name one datastore"
                           " more than once; list each once")
    networks = _names(session, props["networkFolder"], vim.Network)
    default_net = None if target.network else ("VM Network" if "VM Network" in networks else None)
    # An NSX segment is one port group per switch: the one on this cluster's hosts is meant.
    hosts = topology.read_hosts(session, cprops.get("host"))
    on_cluster = topology.networks_of(hosts)
    network = _choose(session, "network", "network", target.network, props["networkFolder"], vim.Network, default_net,
                      origin=target.origin("network"), narrow=lambda objs: [o for o in objs if o in on_cluster])
    network_name = session.retrieve([network], ["name"], vim.Network)[network]["name"]
    folder = _find_folder(session, props["vmFolder"], target.folder, target.origin("folder"))
    folder_path = "/".join(p for p in (target.folder or "").split("/") if p)
    topo = topology.read(session, compute, cprops, hosts, datastores, network, network_name, target)
    return Placement(dc, pool, datastores[0], network, network_name, folder, cprops["name"], folder_path,
                     topology.import_host(topo), topo, compute=compute)


def _datastore(session: Session, root, name: str | None, target: VSphereTarget):
    if name is not None and "/" not in name.strip("/"):
        if name not in _names(session, root, vim.Datastore):
            _refuse_storage_pod(session, root, name)
    key = "datastores" if target.datastores else "datastore"
    return _choose(session, "datastore", key, name, root, vim.Datastore, origin=target.origin(key))


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


def _find_pool(session: Session, root_pool, path: str | None):
    """vsphere.resource_pool: a path of child pools below the cluster's root pool (the default)."""

    def children(pool):
        kids = session.retrieve([pool], ["resourcePool"], vim.ResourcePool)[pool].get("resourcePool") or []
        return {p.get("name"): o for o, p in session.retrieve(kids, ["name"], vim.ResourcePool).items()}

    pool = _walk(root_pool, path, children, "resource pool", "vsphere.resource_pool", "the cluster's root pool")
    if isinstance(pool, vim.VirtualApp):
        # A vApp's VMs belong to no folder, and vmcoreos finds its nodes in vsphere.folder.
        raise ConfigError(
            f"vsphere.resource_pool {path!r} is a vApp, whose VMs are in no VM folder where vmcoreos could find its"
            " nodes again; name a resource pool instead (or the cluster's root pool by leaving it out)"
        )
    return pool


def _find_folder(session: Session, vm_folder, path: str | None, origin: str = "vsphere.folder"):
    def children(folder):
        kids = session.retrieve([folder], ["childEntity"], vim.Folder)[folder].get("childEntity") or []
        subfolders = [c for c in kids if isinstance(c, vim.Folder)]
        return {p.get("name"): o for o, p in session.retrieve(subfolders, ["name"], vim.Folder).items()}

    return _walk(vm_folder, path, children, "folder", origin, "the datacenter's VM folder")


def _walk(root, path: str | None, children, kind: str, where: str, top: str):
    """The object path names below root, one children(obj) -> {name: obj} step per part."""
    obj = root
    walked = []
    for part in [p for p in (path or "").strip("/").split("/") if p]:
        named = children(obj)
        if part not in named:
            listing = ", ".join(sorted(n for n in named if n)) or "none"
            inside = "/".join(walked) or top
            raise VSphereError(f"{kind} {path!r} ({where}) does not exist: no {part!r} in {inside}; found: {listing}")
        obj = named[part]
        walked.append(part)
    return obj


def committed_bytes(session: Session, vm) -> int:
    """What a VM's files take on its datastores now: a thin disk's written blocks, not its capacity."""
    props = session.retrieve([vm], ["summary.storage.committed"], vim.VirtualMachine)[vm]
    return int(props.get("summary.storage.committed") or 0)

