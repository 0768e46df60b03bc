"""rebuild: replace nodes one at a time with a newer release, every other member healthy before each step."""

from __future__ import annotations

from vmcoreos.cluster import nodes as node_ops
from vmcoreos.cluster.locking import cluster_lock
from vmcoreos.cluster.plan import RebuildPlan, plan_rebuild, roll_order, runs_older, sick_members
from vmcoreos.prepare import Prepared
from vmcoreos.cluster.results import RunResult
from vmcoreos.cluster.run import Run
from vmcoreos.cluster import template
from vmcoreos.cluster.joining import join_deadline, wait_joined
from vmcoreos.errors import EtcdError, VSphereError
from vmcoreos.images import source


def plan(run: Run, prepared: Prepared, *, force: bool = False) -> tuple[RebuildPlan, source.VerifiedImage]:
    """What to replace, for the image the channel (or --to-version, --ova) names now."""
    inventory = _inventory(run)
    template.check_privileges(run, inventory.templates)
    image = template.resolve_image(run, inventory.nodes.values())
    planned = plan_rebuild(list(prepared.configs), inventory, image.distro, image.version, force=force)
    return planned, image


def dry_plan(run: Run, prepared: Prepared, *, force: bool = False) -> tuple[RebuildPlan, template.PlannedImage]:
    """The same plan from release metadata alone (--dry-run): nothing downloaded, a local --ova not read."""
    inventory = _inventory(run)
    image = template.plan_image(run, inventory.nodes.values(), inventory.templates)
    planned = plan_rebuild(list(prepared.configs), inventory, image.distro, image.version, force=force)
    return planned, image


def _inventory(run: Run):
    inventory = run.inventory()
    if not inventory.nodes:
        raise VSphereError(f"cluster {run.name!r} has no nodes to rebuild; run `vmcoreos deploy` first")
    return inventory


def apply(run: Run, planned: RebuildPlan, image: source.VerifiedImage) -> RunResult:
    settings = run.settings
    result = RunResult(settings.name, [], image_version=image.version)
    if not planned.pending:
        result.message = planned.message
        return result
    nodes = dict(planned.inventory.nodes)
    with cluster_lock(run, nodes):
        made = template.ensure_template(run, image, planned.inventory.templates)
        result.uploaded, result.template = made.uploaded, made.name
        # Resuming: nodes an interrupted run already replaced must be healthy before the roll goes on.
        if planned.done:
            wait_joined(run, list(planned.done), join_deadline(run))
        for config in roll_order(list(planned.pending), nodes, run.members.leader_name(nodes)):
            nodes = run.inventory().nodes
            vm = nodes.get(config.name)
            if vm is not None and not planned.force and not runs_older(vm, image.distro, image.version):
                continue  # done by an earlier, interrupted run
            peer = run.members.peer_url(config.ip) if config.ip else None
            _check_healthy(run, nodes, skip=config.name, skip_peer=peer)
            if vm is not None:
                node_ops.remove_node(run, vm, nodes)
                nodes.pop(config.name)
            live = run.members.live_view(nodes)
            if live is None:
                raise EtcdError(f"no etcd member answers after removing {config.name}; the roll stopped here")
            run.reporter.event(f"{config.name}: creating on {image.version}")
            node_ops.join(run, made, image, config, live[0])
            result.rebuilt.append(config.name)
        configs = list(planned.configs)
        status = wait_joined(run, configs, join_deadline(run))
        node_ops.record_joined(run, [c.name for c in configs])
    result.nodes = [status[c.name] for c in configs]
    for st in result.nodes:
        st.action = "rebuilt" if st.name in result.rebuilt else "unchanged"
    return result


def _check_healthy(run: Run, nodes, skip: str, skip_peer: str | None = None) -> None:
    """Every member but the one about to be replaced must be healthy."""
    live = run.members.live_view(nodes, exclude={skip})
    if live is None:
        raise EtcdError("no etcd member answers; the cluster is down, so the roll stops before touching it")
    _, view = live
    sick = sick_members(view, run.members.health(view), skip, skip_peer)
    if sick:
        raise EtcdError(
            f"etcd members {', '.join(sick)} are not healthy; the roll stops before {skip} with quorum intact."
            " Repair them and run again to resume"
        )
