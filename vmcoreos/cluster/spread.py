"""Placement during a run: where each new node goes, and the DRS rule kept in step with the nodes.

The decision is cluster/placement.py's (pure); this module feeds it what the
run sees (usable hosts and datastores from vsphere/topology.py, where the
nodes run now) and writes the anti-affinity rule (vsphere/drsrule.py). The
executors call three functions: choose() before cloning, keep_rule() after a
clone and before its power-on, leave() before a node is deleted.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pyVmomi import vim

from vmcoreos.cluster import placement
from vmcoreos.cluster.placement import Spot
from vmcoreos.cluster.run import Run
from vmcoreos.reporting import Reporter
from vmcoreos.vsphere import drsrule, vms
from vmcoreos.vsphere.session import Session
from vmcoreos.vsphere.topology import Topology


def spot_of(topology: Topology, vm: vms.VmInfo) -> Spot:
    """Where vm runs, by name: its host and its first datastore (the one holding its files)."""
    stores = [topology.name_of(d) for d in vm.datastores]
    named = [d for d in stores if d in topology.datastores] + stores
    return Spot(topology.name_of(vm.host), named[0] if named else None)


def choose(run: Run, names: list[str], nodes: dict[str, vms.VmInfo]) -> dict[str, tuple[Any, Any]]:
    """(host, datastore) for each new node, apart from the nodes there are (by name); warnings said once per run."""
    topo = run.placement.topology
    members = {n: spot_of(topo, vm) for n, vm in nodes.items()}
    spread = placement.choose(names, topo.mounts, list(topo.datastores), members, prefer=run.replaced)
    warnings = list(spread.warnings)
    if topo.pinned and len(members.keys() | set(names)) > 1:
        warnings = [f"vsphere.host puts every etcd member on {topo.pinned}, so one host failure takes them all;"
                    " unset it to spread them over the cluster's hosts"]
    for text in warnings:
        if text not in run.said:
            run.said.add(text)
            run.reporter.warn(text)
    for name, spot in spread.spots.items():
        run.reporter.event(f"{name}: placing on host {spot.host}, datastore {spot.datastore}")
    return {n: (topo.hosts[s.host], topo.datastores[s.datastore]) for n, s in spread.spots.items()}


def datastore_shares(run: Run, count: int) -> dict[str, int]:
    """How many of count new nodes each datastore would receive (for the room check before any upload)."""
    topo = run.placement.topology
    if len(topo.datastores) == 1:
        return {next(iter(topo.datastores)): count}
    members = {n: spot_of(topo, vm) for n, vm in run.inventory().nodes.items()}
    spots = placement.choose([f"new-{i}" for i in range(count)], topo.mounts, list(topo.datastores), members).spots
    return dict(Counter(s.datastore for s in spots.values()))


def keep_rule(run: Run, nodes: dict[str, vms.VmInfo], adding: list[vms.VmInfo] = ()) -> None:
    """On a DRS cluster, the anti-affinity rule holds the nodes (all there are) and those being added, before
    they power on. Fewer than two: nothing to keep apart (leave() takes a rule down)."""
    topo = run.placement.topology
    refs = {vm.moref: vm.ref for vm in list(nodes.values()) + list(adding)}
    if topo.drs and len(refs) >= 2:
        _sync(run, list(refs.values()))


def leave(run: Run, vm: vms.VmInfo, nodes: dict[str, vms.VmInfo]) -> None:
    """Before a node is deleted: it leaves the rule (nodes: the cluster's, with or without it), and where it
    ran is remembered for its replacement."""
    topo = run.placement.topology
    run.replaced[vm.name] = spot_of(topo, vm)
    if topo.drs:
        _sync(run, [v.ref for n, v in nodes.items() if n != vm.name])


def _sync(run: Run, refs: list) -> None:
    topo = run.placement.topology
    # A "must" rule stops a power-on that would break it; with more members than hosts that would fail the
    # run, so the rule becomes a "should": DRS still keeps them as far apart as it can.
    mandatory = len(refs) <= len(topo.hosts)
    written = drsrule.sync(run.session, topo.compute, run.name, refs, mandatory=mandatory)
    name = drsrule.rule_name(run.name)
    if written.warning and written.warning not in run.said:
        run.said.add(written.warning)
        run.reporter.warn(written.warning)
    elif written.action == "remove":
        run.reporter.event(f"removed DRS rule {name}: one member has nothing to be kept apart from")
    elif written.action:
        kind = "must" if mandatory else "should: more members than usable hosts"
        run.reporter.event(f"DRS rule {name} keeps {len(refs)} members apart ({kind})")


def rule_state(run: Run, nodes: dict[str, vms.VmInfo]) -> str | None:
    """status: whether the anti-affinity rule holds exactly the nodes ("exact", "missing", "differs");
    None without DRS or with fewer than two nodes."""
    topo = run.placement.topology
    if not topo.drs or len(nodes) < 2:
        return None
    rule = drsrule.find(run.session, topo.compute, drsrule.rule_name(run.name))
    if rule is None:
        return "missing"
    same = {v._moId for v in rule.vm or []} == {vm.moref for vm in nodes.values()}
    return "exact" if same and rule.enabled else "differs"


def drop_rule(session: Session, cluster: str, nodes: list[vms.VmInfo], reporter: Reporter) -> None:
    """destroy: the rule goes with the nodes, on the compute cluster they run in."""
    hosts = [vm.host for vm in nodes if vm.host is not None]
    if not hosts:
        return
    compute = session.retrieve(hosts[:1], ["parent"], vim.HostSystem)[hosts[0]].get("parent")
    if drsrule.find(session, compute, drsrule.rule_name(cluster)) is None:
        return
    written = drsrule.remove(session, compute, cluster)
    if written.warning:
        reporter.warn(written.warning)
    elif written.action:
        reporter.event(f"removed DRS rule {drsrule.rule_name(cluster)}")
