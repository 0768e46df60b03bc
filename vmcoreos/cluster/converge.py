"""The rolling change deploy and rebuild share: running nodes brought to what the cluster file asks, one at a time.

Each step: every other member healthy first; then the node is replaced
(`member remove`, delete, `member add`, a new clone) or reconfigured (CPUs,
memory: powered off, set, started); then it must be a healthy member again,
and a key written before the roll must still read the same, before the next
node is touched. Missing nodes first, followers next, the leader last: one
election for the whole roll. A stop anywhere leaves quorum, and the next
run's plan (made from the nodes' marks) picks up what is left.
"""

from __future__ import annotations

from typing import Callable

from vmcoreos import etcd
from vmcoreos.cluster import nodes as node_ops
from vmcoreos.cluster.desired import Desired, drift
from vmcoreos.cluster.plan import roll_order, sick_members
from vmcoreos.cluster.results import RunResult
from vmcoreos.cluster.run import Run
from vmcoreos.cluster.joining import join_deadline, wait_joined
from vmcoreos.cluster.members import settled
from vmcoreos.errors import EtcdError
from vmcoreos.guest.configvalues import NodeConfig

CANARY = "vmcoreos/converge-canary"  # under the lock's prefix namespace: a key only vmcoreos writes


def roll(run: Run, pending: list[NodeConfig], want: Desired, result: RunResult, *,
         template: Callable[[], tuple], force: bool = False) -> None:
    """Replace or resize each pending node in roll order; template() gives (Template, image) once one is needed."""
    from vmcoreos.cluster.template import check_privileges

    check_privileges(run)  # before the first node is touched: a refusal half way would leave one powered off
    nodes = run.inventory().nodes
    canary = _write_canary(run, nodes)
    for config in roll_order(pending, nodes, run.members.leader_name(nodes)):
        nodes = run.inventory().nodes
        vm = nodes.get(config.name)
        change = drift(vm, config, want) if vm is not None else None
        if vm is not None and not change.action and not force:
            continue  # done by an earlier, interrupted run (or by another since the plan)
        peer = run.members.peer_url(config.ip) if config.ip else None
        check_healthy(run, nodes, skip=config.name, skip_peer=peer)
        if vm is not None and not change.replace and not force:
            run.reporter.event(f"{config.name}: reconfigure: {change}")
            node_ops.resize(run, vm, nodes)
            wait_joined(run, [config], join_deadline(run))
            result.reconfigured.append(config.name)
        else:
            made, image = template()
            if vm is not None:
                run.reporter.event(f"{config.name}: replace: {str(change) or 'forced (--force)'}")
                node_ops.remove_node(run, vm, nodes)
                nodes.pop(config.name)
            live = settled(lambda: run.members.live_view(nodes), lambda answer: answer is None)
            if live is None:
                raise EtcdError(f"no etcd member answers after removing {config.name}; the roll stopped here")
            run.reporter.event(f"{config.name}: creating on {image.version}")
            node_ops.join(run, made, image, config, live[0])
            result.rebuilt.append(config.name)
        _check_canary(run, config, canary)


def check_healthy(run: Run, nodes, skip: str, skip_peer: str | None = None) -> None:
    """Every member but the one about to be changed must be healthy. Silence or a sick answer is asked again
    for a while first (members.settled): the step before restarted a member, and while the election that
    follows settles the others can answer neither the member list nor /health."""
    def sick_now() -> list[str] | None:
        live = run.members.live_view(nodes, exclude={skip})
        if live is None:
            return None
        _, view = live
        return sick_members(view, run.members.health(view), skip, skip_peer)

    sick = settled(sick_now, lambda answer: answer is None or bool(answer))
    if sick is None:
        raise EtcdError("no etcd member answers; the cluster is down, so the roll stops before touching it")
    if sick:
        raise EtcdError(
            f"etcd members {', '.join(sick)} are not healthy; the roll stops before {skip} with quorum intact."
            " Repair them and run again to resume"
        )


def _write_canary(run: Run, nodes) -> str | None:
    """A key written through the cluster before the roll; None when etcd has no v3 API (etcd2: health only)."""
    live = run.members.live_view(nodes)
    if live is None:
        return None
    import secrets

    value = secrets.token_hex(8)
    return value if etcd.put_key(run.members.client, live[0], CANARY, value) else None


def _check_canary(run: Run, config: NodeConfig, value: str | None) -> None:
    """The key written before the roll reads the same through the node just changed: its data came across."""
    if value is None or not config.ip:
        return
    endpoint = run.members.endpoint_at(config.ip)
    got = etcd.get_key(run.members.client, endpoint, CANARY)
    if got != value:
        raise EtcdError(
            f"{config.name} is a healthy member but does not return the key written before the roll"
            f" ({CANARY}); the roll stops here with quorum intact: check the cluster with `vmcoreos status`"
        )
    run.reporter.event(f"{config.name}: reads the data written before the roll")
