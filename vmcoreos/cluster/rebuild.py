"""rebuild: bring every node to the cluster file and the newest release, one node at a time, from cron.

plan(run, prepared) -> RebuildPlan (the image inside it), apply(run, plan) ->
RunResult. A node is changed when it runs an older release than the
channel's (or --to-version's, --ova's build), or differs from the cluster file
in any way deploy would change it (config, CPUs, memory, network, datastore);
--force replaces every node even when nothing differs. The roll is
cluster/converge.py's: quorum kept, leader last, resumable. rebuild never
adds or removes nodes beyond the ones missing, so it never asks.
"""

from __future__ import annotations

from dataclasses import replace

from vmcoreos.cluster import converge
from vmcoreos.cluster import nodes as node_ops
from vmcoreos.cluster.locking import cluster_lock
from vmcoreos.cluster.plan import RebuildPlan, plan_rebuild
from vmcoreos.prepare import Prepared
from vmcoreos.cluster.results import RunResult
from vmcoreos.cluster.run import Run
from vmcoreos.cluster import template
from vmcoreos.cluster.joining import join_deadline, wait_joined
from vmcoreos.errors import VSphereError


def plan(run: Run, prepared: Prepared, *, force: bool = False, dry_run: bool = False) -> RebuildPlan:
    """What to change, for the image the channel (or --to-version, --ova) names now.

    A real run fetches and verifies the image first (its version decides); a dry run reads release
    metadata only, so a local --ova's build is unknown and the plan says so.
    """
    inventory = run.inventory()
    if not inventory.nodes:
        raise VSphereError(f"cluster {run.name!r} has no nodes to rebuild; run `vmcoreos deploy` first")
    if dry_run:
        image = template.plan_image(run, inventory.nodes.values(), inventory.templates)
    else:
        template.check_privileges(run, inventory.templates)
        image = template.resolve_image(run, inventory.nodes.values())
    want = run.desired(image.version, inventory.nodes.values())
    return replace(plan_rebuild(list(prepared.configs), inventory, want, force=force), image=image)


def apply(run: Run, planned: RebuildPlan) -> RunResult:
    image = planned.image
    result = RunResult(run.name, [], image_version=image.version, plan=[s.as_dict() for s in planned.steps()])
    if not planned.pending:
        result.message = planned.message
        return result
    nodes = dict(planned.inventory.nodes)
    with cluster_lock(run, nodes):
        made = []

        def template_once() -> tuple:
            if not made:
                made.append(template.ensure_template(run, image, planned.inventory.templates))
                result.uploaded, result.template = made[0].uploaded, made[0].name
            return made[0], image

        # Resuming: nodes an interrupted run already replaced must be healthy before the roll goes on.
        if planned.done:
            wait_joined(run, list(planned.done), join_deadline(run))
        want = run.desired(image.version, run.inventory().nodes.values())
        converge.roll(run, list(planned.pending), want, result, template=template_once, force=planned.force)
        configs = list(planned.configs)
        status = wait_joined(run, configs, join_deadline(run))
        node_ops.record_joined(run, [c.name for c in configs])
    result.nodes = [status[c.name] for c in configs]
    for st in result.nodes:
        st.action = ("rebuilt" if st.name in result.rebuilt else "reconfigured" if st.name in result.reconfigured
                     else "unchanged")
    return result
