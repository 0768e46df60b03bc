"""The chosen cluster as placement sees it: which hosts can run a node, which datastores each mounts, DRS.

Read once per run. Usable: connected, not in maintenance mode, on the
network, and mounting at least one of the datastores the cluster file names
(vCenter will not deploy or power on a VM on a host in maintenance mode).
The choice among them is cluster/placement.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyVmomi import vim

from vmcoreos.errors import VSphereError
from vmcoreos.settings import VSphereTarget
from vmcoreos.vsphere.session import Session

HOST_PROPS = ["name", "runtime.connectionState", "runtime.inMaintenanceMode", "datastore", "network"]


@dataclass(frozen=True)
class Topology:
    compute: Any
    drs: bool
    hosts: dict[str, Any]  # usable host name -> HostSystem
    mounts: dict[str, tuple[str, ...]]  # usable host name -> the chosen datastores it mounts, in their order
    datastores: dict[str, Any]  # chosen datastore name -> Datastore, in the cluster file's order
    unusable: dict[str, str] = field(default_factory=dict)  # host name -> why it cannot run a node
    names: dict[str, str] = field(default_factory=dict)  # moref -> name, every host of the cluster and datastore
    pinned: str | None = None  # vsphere.host: every node goes there

    def name_of(self, ref) -> str | None:
        return None if ref is None else self.names.get(getattr(ref, "_moId", ""), getattr(ref, "_moId", None))


def shown(name) -> str:
    """A name vCenter gave, fit for a terminal line: control characters (an escape sequence) become '?'."""
    return "".join(c if c.isprintable() else "?" for c in str(name))[:120]


def drs_enabled(compute, configuration) -> bool:
    """configuration: the compute resource's configurationEx (read with its other properties)."""
    if not isinstance(compute, vim.ClusterComputeResource):
        return True  # a standalone host's compute resource places on its one host
    return bool(getattr(getattr(configuration, "drsConfig", None), "enabled", False))


def read_hosts(session: Session, host_refs) -> dict:
    """The cluster's hosts with what placement (and the NSX port group choice) needs of them, in one call."""
    return session.retrieve(list(host_refs or []), HOST_PROPS, vim.HostSystem)


def networks_of(hosts: dict) -> set:
    """Every network (port group) some host is on: an NSX segment's port group on the cluster's own switch is
    among them, its twin on another cluster's switch is not."""
    return {n for p in hosts.values() for n in (p.get("network") or [])}


def read(session: Session, compute, cprops: dict, hosts: dict, datastores: list, network, net_name: str,
         target: VSphereTarget) -> Topology:
    """The usable hosts (read_hosts) of compute for these datastores and network; refuses when none (or
    vsphere.host) cannot. cprops: the compute resource's name and configurationEx."""
    cluster_name = cprops.get("name")
    stores = session.retrieve(datastores, ["name"], vim.Datastore)
    ds_names = [shown(stores.get(d, {}).get("name", d._moId)) for d in datastores]
    names = {o._moId: shown(p.get("name", o._moId)) for o, p in hosts.items()}
    names.update({d._moId: n for d, n in zip(datastores, ds_names)})
    by_name = {names[o._moId]: o for o in hosts}

    def mounted(obj) -> tuple[str, ...]:
        have = set(hosts[obj].get("datastore") or [])
        return tuple(n for d, n in zip(datastores, ds_names) if d in have)

    def unusable(obj) -> str | None:
        p = hosts[obj]
        if p.get("runtime.connectionState") != "connected":
            return f"is {p.get('runtime.connectionState')}"
        if p.get("runtime.inMaintenanceMode"):
            return "is in maintenance mode"
        if not mounted(obj):
            return f"does not mount datastore {' or '.join(repr(n) for n in ds_names)}"
        if network not in (p.get("network") or []):
            return f"is not on network {net_name!r}"
        return None

    why = {names[o._moId]: unusable(o) for o in hosts}
    if target.host:
        if target.host not in by_name:
            listing = ", ".join(sorted(by_name)) or "none"
            raise VSphereError(f"host {target.host!r} (vsphere.host) is not in cluster {cluster_name!r};"
                               f" found: {listing}")
        if why[target.host]:
            raise VSphereError(f"host {target.host!r} (vsphere.host) {why[target.host]};"
                               " pick another host in vsphere.host")
        why = {n: (w if n == target.host else "is not vsphere.host") for n, w in why.items()}
    usable = {n: by_name[n] for n in sorted(by_name) if why[n] is None}
    if not usable:
        detail = "; ".join(f"{n} {why[n]}" for n in sorted(why)) or "it has none"
        raise VSphereError(
            f"no host in cluster {cluster_name!r} can run the nodes ({detail});"
            " pick a datastore and network its hosts share, or bring a host out of maintenance"
        )
    return Topology(
        compute, drs_enabled(compute, cprops.get("configurationEx")), usable,
        {n: mounted(o) for n, o in usable.items()},
        dict(zip(ds_names, datastores)), {n: w for n, w in why.items() if w}, names, target.host,
    )


def import_host(topology: Topology):
    """The host the template import goes to: None on a DRS cluster (DRS places it) unless vsphere.host names one;
    without DRS the first usable host, by name, that mounts the template's (first) datastore."""
    if topology.pinned:
        return topology.hosts[topology.pinned]
    if topology.drs:
        return None
    first = next(iter(topology.datastores))
    mounting = [topology.hosts[h] for h, ds in topology.mounts.items() if first in ds]
    return (mounting or list(topology.hosts.values()))[0]
