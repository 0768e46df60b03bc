"""Waiting for nodes: guest tools and an address from vSphere, then a healthy etcd member."""

from __future__ import annotations

import time

import tenacity
from pyVmomi import vim

from vmcoreos import etcd
from vmcoreos.cluster import parallel
from vmcoreos.cluster.results import NodeStatus
from vmcoreos.cluster.run import Run
from vmcoreos.errors import NotJoinedError
from vmcoreos.guest.configvalues import NodeConfig
from vmcoreos.reporting import stage
from vmcoreos.vsphere import guestnet, vms
from vmcoreos.vsphere.waits import Watch

KEPT = "the VMs are kept for inspection (see `vmcoreos status`; deploy --rollback removes them instead)"


def join_deadline(run: Run) -> float:
    """When a join started now must be done: wait.timeout bounds joining only.

    Called once a node is cloned and powered on (the members of a new cluster
    together, a later join each on its own): the download, upload and clones
    before it take minutes at real speed and have their own progress-based
    limits (images/transfer/download.py, vsphere/importer.py, vsphere/waits.py).
    """
    return time.monotonic() + run.settings.wait_timeout


def wait_joined(run: Run, configs: list[NodeConfig], deadline: float,
                nodes: dict[str, vms.VmInfo] | None = None) -> dict[str, NodeStatus]:
    """Guest tools and IP first (one PropertyCollector wait), then each node's etcd, polled in parallel."""
    status = wait_guests(run, [c.name for c in configs], deadline, nodes)

    def member(st: NodeStatus) -> bool:
        # Polled with a short backoff: etcd only answers once the node is up, and a node
        # noticed late costs the whole deploy that delay.
        retrying = tenacity.Retrying(
            wait=tenacity.wait_exponential(multiplier=0.05, max=0.5),
            stop=tenacity.stop_after_delay(max(0.0, deadline - time.monotonic()))
            | tenacity.stop_when_event_set(parallel.stopping),
            retry=tenacity.retry_if_result(lambda ok: not ok),
        )
        def ready() -> bool:
            joined = member_ready(run.members.client, run.members.endpoint_at(st.ip), st)
            stage(run.reporter, st.name, st.stage)
            return joined

        try:
            retrying(ready)
        except tenacity.RetryError:
            return False
        run.reporter.event(f"{st.name}: healthy etcd member {st.member_id}")
        stage(run.reporter, st.name, "healthy")
        return True

    futures = parallel.run_all(member, [(status[n],) for n in sorted(status)], min(16, len(status)))
    parallel.first_failure(futures)
    joined = [f.result() for f in futures]
    if not all(joined):
        not_joined(run, status)
    return status


def wait_guests(run: Run, names: list[str], deadline: float,
                nodes: dict[str, vms.VmInfo] | None = None) -> dict[str, NodeStatus]:
    """Until guest tools run and report the node's address on every named node (one PropertyCollector filter).

    A static node's address is the configured one, awaited until the guest
    reports it; a DHCP node's is its first NIC's IPv4 (vsphere/guestnet.py),
    awaited until there is one. `nodes` spares a listing when the caller has
    a fresh one holding every name.
    """
    status = {n: NodeStatus(n) for n in names}
    if nodes is None or any(n not in nodes for n in names):
        nodes = run.inventory().nodes
    refs = {nodes[n].ref: n for n in names if n in nodes}
    props = ["runtime.powerState", "guest.toolsRunningStatus", "guest.ipAddress", "guest.net"]

    def ready(values):
        for ref, name in refs.items():
            v = values.get(ref, {})
            st = status[name]
            st.power = v.get("runtime.powerState", st.power)
            st.tools = v.get("guest.toolsRunningStatus", st.tools)
            st.ip = node_address(run, name, v.get("guest.net"), v.get("guest.ipAddress"))
            st.stage = "tools running" if st.tools == "guestToolsRunning" else (
                "powered on" if st.power == "poweredOn" else st.stage
            )
            if st.ip and st.tools == "guestToolsRunning":
                st.stage = "has IP"
            if st.stage != "planned":
                stage(run.reporter, name, st.stage)
        return all(status[n].stage == "has IP" for n in refs.values())

    run.reporter.event("waiting for guest tools and IP addresses of " + ", ".join(sorted(status)))
    with Watch(run.session, list(refs), props, vim.VirtualMachine) as watch:
        try:
            watch.until(ready, deadline, "guests")
        except TimeoutError:
            not_joined(run, status)
    return status


def node_address(run: Run, name: str, net, primary: str | None) -> str | None:
    """The address etcd is reached at once the guest shows it: the configured one (static) or the first NIC's."""
    configured = run.configured_address(name)
    if configured is None:
        return guestnet.node_address(net, primary)
    return configured if configured in guestnet.reported(net, primary) else None


def member_ready(client: etcd.Client, endpoint: str, st: NodeStatus) -> bool:
    """Ask the node's own etcd how far it has joined; the rule itself is etcd.membership.join_state."""
    state = etcd.probe_join(client, endpoint, st.name)
    if state.stage is not None:
        st.stage = state.stage
    st.member_id = state.member_id or st.member_id
    st.healthy = state.joined
    st.leader = state.leader
    return state.joined


def not_joined(run: Run, status: dict[str, NodeStatus]) -> None:
    settings = run.settings
    late = [s for s in status.values() if not s.healthy]
    detail = ", ".join(f"{s.name} reached '{s.stage}'" for s in late)
    hint = ""
    if settings.image.distro == "flatcar" and any(s.stage == "has IP" for s in late):
        # etcd-member.service pulls etcd's container image at first boot; without the registry it never starts.
        image = settings.etcd.image or "quay.io/coreos/etcd (the default)"
        hint = (f" first check that the nodes can pull the etcd image {image}: `journalctl -u etcd-member` on a"
                " node shows the pull; set etcd.image in the cluster file to a registry mirror if they cannot;")
    raise NotJoinedError(f"nodes did not join etcd within {settings.wait_timeout:g}s of being powered on"
                         f" (wait.timeout): {detail};{hint} {KEPT}")
