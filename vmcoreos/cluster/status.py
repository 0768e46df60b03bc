"""status: one row per node as vSphere and etcd see it, with the reasons it differs from the cluster file.

plan(run, prepared) -> StatusPlan (what vSphere holds and how each node
differs: the same diff deploy acts on), apply(run, plan) -> RunResult (what
etcd says of each). The image is compared only where the cluster file pins
a release: status never asks a channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmcoreos import etcd, naming
from vmcoreos.cluster import placement, spread
from vmcoreos.cluster.desired import Drift, drift, pinned_version
from vmcoreos.cluster.inventory import Inventory
from vmcoreos.prepare import Prepared
from vmcoreos.cluster.results import NodeStatus, RunResult
from vmcoreos.cluster.run import Run
from vmcoreos.guest.configvalues import NodeConfig
from vmcoreos.vsphere import vms


@dataclass(frozen=True)
class StatusPlan:
    cluster: str
    configs: tuple[NodeConfig, ...]
    inventory: Inventory
    drift: dict[str, Drift] = field(default_factory=dict)  # every existing node, drifted or not

    def names(self) -> list[str]:
        wanted = {c.name for c in self.configs}
        return sorted(wanted | set(self.inventory.nodes), key=lambda n: naming.node_index(self.cluster, n) or 0)


def plan(run: Run, prepared: Prepared) -> StatusPlan:
    inventory = run.inventory()
    want = run.desired(pinned_version(run.settings), inventory.nodes.values())
    configs = {c.name: c for c in prepared.configs}
    diffs = {n: drift(vm, configs[n], want) for n, vm in inventory.nodes.items() if n in configs}
    return StatusPlan(run.name, tuple(prepared.configs), inventory, diffs)


def apply(run: Run, planned: StatusPlan) -> RunResult:
    nodes = planned.inventory.nodes
    live = run.members.live_view(nodes)
    view = live[1] if live else etcd.ClusterView([])
    health = run.members.health(view) if live else {}
    result = RunResult(run.name, [])
    result.etcd_answered = live is not None
    for name in planned.names():
        vm = nodes.get(name)
        st = NodeStatus(name)
        if vm is None:
            st.stage = "missing"
            st.reasons = ["missing"]
        else:
            st.power, st.tools, st.ip = vm.power, vm.tools, vm.ip
            spot = spread.spot_of(run.placement.topology, vm)
            st.host, st.datastore = spot.host, spot.datastore
            st.image_version = vm.extra.get(vms.MARK_VERSION)
            diff = planned.drift.get(name)
            st.reasons = list(diff.reasons) if diff is not None else ["beyond the wanted count"]
            st.drift = bool(st.reasons)
            member = view.by_name(name)
            if member is not None:
                st.member_id = member.id
                st.healthy = health.get(member.id, False)
                st.leader = view.leader == member.id
                st.stage = "healthy" if st.healthy else "unhealthy"
            else:
                st.stage = "not a member" if vm.power == "poweredOn" else vm.power
        result.nodes.append(st)
    _flag_sharing(run, result)
    result.drs_rule = spread.rule_state(run, nodes)
    return result


def _flag_sharing(run: Run, result: RunResult) -> None:
    """Each node that shares a host or datastore with other members says so; degraded when that was avoidable."""
    topo = run.placement.topology
    spots = {s.name: placement.Spot(s.host, s.datastore) for s in result.nodes if s.host or s.datastore}
    found = placement.sharing(spots, len(topo.hosts), len(topo.datastores))
    for st in result.nodes:
        parts = [f"{what} with {', '.join(found_in[st.name])}"
                 for what, found_in in (("host", found.shared_host), ("datastore", found.shared_datastore))
                 if st.name in found_in and (what == "host" or len(topo.datastores) > 1)]
        st.shares = "; ".join(parts)
    result.placement_degraded = found.degraded


def verdict(result: RunResult) -> str:
    """healthy, critical (a node missing, down or unhealthy), unknown (no etcd member answered though a node runs),
    or degraded: every member healthy, but some share a host or datastore although a usable one is free.

    A cluster whose VMs vCenter reports powered off is known to be down; silence from running ones may be
    the network between here and them, so monitoring should call that unknown, not critical.
    """
    nodes = result.nodes
    if nodes and all(s.healthy for s in nodes):
        return "degraded" if result.placement_degraded else "healthy"
    if not result.etcd_answered and any(s.power == "poweredOn" for s in nodes):
        return "unknown"
    return "critical"
