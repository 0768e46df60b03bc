"""status: one row per node as vSphere and etcd see it; drift compares the config digest with a fresh render."""

from __future__ import annotations

from vmcoreos import etcd, naming
from vmcoreos.prepare import Prepared
from vmcoreos.cluster.results import NodeStatus, RunResult
from vmcoreos.cluster.run import Run
from vmcoreos.vsphere import vms


def apply(run: Run, prepared: Prepared) -> RunResult:
    settings = run.settings
    configs = {c.name: c for c in prepared.configs}
    nodes = run.inventory().nodes
    live = run.members.live_view(nodes)
    view = live[1] if live else etcd.ClusterView([])
    health = run.members.health(view) if live else {}
    result = RunResult(settings.name, [])
    result.etcd_answered = live is not None
    for name in sorted(set(configs) | set(nodes), key=lambda n: naming.node_index(settings.name, n) or 0):
        vm = nodes.get(name)
        st = NodeStatus(name)
        if vm is None:
            st.stage = "missing"
        else:
            st.power, st.tools, st.ip = vm.power, vm.tools, vm.ip
            st.image_version = vm.extra.get(vms.MARK_VERSION)
            expected = configs.get(name)
            st.drift = expected is None or vm.extra.get(vms.MARK_DIGEST) != expected.digest
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
