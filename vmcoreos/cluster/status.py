"""status: one row per node as vSphere and etcd see it, with the reasons it differs from the cluster file.

plan(run, prepared) -> StatusPlan (what vSphere holds and how each node
differs: the same diff deploy acts on), apply(run, plan) -> RunResult (what
etcd says of each). The image is compared only where the cluster file pins
a release: status never asks a channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmcoreos import etcd, naming
from vmcoreos.cluster.desired import Drift, drift, pinned_version
from vmcoreos.cluster.inventory import Inventory
from vmcoreos.cluster.prepare import Prepared
from vmcoreos.cluster.results import NodeStatus, RunResult
from vmcoreos.cluster.run import Run
from vmcoreos.guest.configs import NodeConfig
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
    return result


def verdict(result: RunResult) -> str:
    """healthy, critical (a node missing, down or unhealthy) or unknown (no etcd member answered though a node runs).

    A cluster whose VMs vCenter reports powered off is known to be down; silence from running ones may be
    the network between here and them, so monitoring should call that unknown, not critical.
    """
    nodes = result.nodes
    if nodes and all(s.healthy for s in nodes):
        return "healthy"
    if not result.etcd_answered and any(s.power == "poweredOn" for s in nodes):
        return "unknown"
    return "critical"
