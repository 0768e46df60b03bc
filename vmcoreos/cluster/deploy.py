"""deploy: converge the cluster to the cluster file: scale down first, then up, then roll what differs.

plan(run, prepared) -> DeployPlan, apply(run, plan) -> RunResult. Nodes that
exist but differ from the file (config, image, network, datastore: a new
clone; CPUs, memory: a reconfigure) go through the same quorum-safe roll as
rebuild (cluster/converge.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

from vmcoreos.cluster import converge
from vmcoreos.cluster import nodes as node_ops
from vmcoreos.cluster import spread
from vmcoreos.cluster.locking import cluster_lock
from vmcoreos.cluster.desired import pinned_version
from vmcoreos.cluster.plan import CountSource, DeployPlan, plan_deploy, removal_order
from vmcoreos.prepare import Prepared
from vmcoreos.cluster.results import RunResult
from vmcoreos.cluster.run import Run
from vmcoreos.cluster import template
from vmcoreos.cluster.joining import KEPT, join_deadline, wait_joined
from vmcoreos.errors import EtcdError, NotJoinedError
from vmcoreos.reporting import stage
from vmcoreos.vsphere import power


def plan(run: Run, prepared: Prepared, *, dry_run: bool = False) -> DeployPlan:
    """What deploy would do, per node with its reasons; a dry run also says which image new nodes get
    (from release metadata: nothing is downloaded, a local OVA not read)."""
    inventory = run.inventory()
    want = run.desired(pinned_version(run.settings), inventory.nodes.values())
    count = CountSource(len(prepared.configs), prepared.file_count or len(prepared.configs), prepared.count_flag)
    planned = plan_deploy(list(prepared.configs), inventory, want, count=count)
    if dry_run and (planned.create or planned.replaces):
        planned = replace(planned, image=template.plan_image(run, inventory.nodes.values(), inventory.templates))
    return planned


def apply(run: Run, planned: DeployPlan, *, rollback: bool = False) -> RunResult:
    nodes = dict(planned.inventory.nodes)
    configs = list(planned.configs)
    result = RunResult(run.name, [], plan=[s.as_dict() for s in planned.steps()])
    made: list = []  # (Template, image), once a node is cloned: one resolve and import per run

    def template_once() -> tuple:
        if not made:
            made.append(_template(run, planned, len(planned.create) or 1, result))
        return made[0]

    with cluster_lock(run, nodes):
        for name in planned.remove:
            node_ops.remove_node(run, nodes.pop(name), nodes)
            result.removed.append(name)
        spread.keep_rule(run, nodes)  # the rule holds the nodes that stay (and those made before it existed)
        for name in planned.power_on:
            run.reporter.event(f"{name}: powering on")
            power.on(run.session, nodes[name])
            stage(run.reporter, name, "powered on")
            result.started.append(name)
        try:
            # A new cluster's members share the deadline bootstrap started; every other node has joined
            # already or was only powered on, and gets wait.timeout from here.
            deadline = _create(run, planned, nodes, result, template_once) if planned.create else None
            if planned.drift:
                # Nodes just started must be healthy members again before the roll asks every member to be.
                started = [c for c in configs if c.name in planned.power_on]
                if started:
                    wait_joined(run, started, join_deadline(run))
                want = run.desired(pinned_version(run.settings), run.inventory().nodes.values())
                converge.roll(run, list(planned.changes), want, result, template=template_once)
            status = wait_joined(run, configs, join_deadline(run) if deadline is None else deadline)
            node_ops.record_joined(run, [c.name for c in configs])
        except NotJoinedError as exc:
            if not (rollback and result.created):
                raise
            _roll_back(run, result.created)
            raise NotJoinedError(exc.message.replace(KEPT, "the nodes this run created were removed (--rollback)"))
        except BaseException:
            if rollback and result.created:
                _roll_back(run, result.created)
            raise
    actions = {**{n: "started" for n in result.started}, **{n: "reconfigured" for n in result.reconfigured},
               **{n: "replaced" for n in result.rebuilt}, **{n: "created" for n in result.created}}
    for config in configs:
        st = status[config.name]
        st.action = actions.get(config.name, "unchanged")
        st.drift = False
        result.nodes.append(st)
    return result


def _template(run: Run, planned: DeployPlan, new_nodes: int, result: RunResult) -> tuple:
    """The verified image and the template clones come from: imported once, room checked for new_nodes."""
    templates = planned.inventory.templates
    template.check_privileges(run, templates)
    pending = template.begin_streamed(run, templates, planned.inventory.nodes.values())
    if pending is not None:
        # A fresh local OVA: the upload's read is its verification, and the template is trusted after it.
        with pending:
            template.check_room(run, None, lambda: pending, templates, new_nodes)
            image, made = template.stream_template(run, pending)
    else:
        image = template.resolve_image(run, planned.inventory.nodes.values())
        # The run's one opening of the verified OVA, if any: the room check and the import read the same
        # archive, and with the template present (linked clones) neither opens it.
        with contextlib.ExitStack() as stack:
            opened = []

            def archive():
                from vmcoreos.images.verified_upload import upload_read

                if not opened:
                    opened.append(stack.enter_context(upload_read(image)))
                return opened[0]

            template.check_room(run, image, archive, templates, new_nodes)
            made = template.ensure_template(run, image, templates, opened[0] if opened else None)
    result.image_version = image.version
    result.uploaded, result.template = made.uploaded, made.name
    return made, image


def _create(run: Run, planned: DeployPlan, nodes, result: RunResult, template_once) -> float | None:
    """Make the missing nodes; a new cluster's join deadline (its members are awaited together), else None."""
    missing = list(planned.create)
    made, image = template_once()
    live = run.members.live_view(nodes)
    result.created = [c.name for c in missing]
    if live is None and not nodes:
        return node_ops.bootstrap(run, made, image, missing)
    elif live is None:
        raise EtcdError(
            f"nodes {', '.join(sorted(nodes))} exist but none answers etcd, so new nodes cannot join;"
            " check them with `vmcoreos status`"
        )
    else:
        for config in missing:
            node_ops.join(run, made, image, config, live[0])
            live = run.members.live_view(run.inventory().nodes) or live
    return None


def _roll_back(run: Run, names: list[str]) -> None:
    """--rollback: take out the nodes this run created, membership first, so a failed deploy leaves nothing."""
    run.reporter.event(f"rolling back: removing {', '.join(names)}")
    for name in removal_order(run.name, names):
        nodes = run.inventory().nodes
        if name in nodes:
            with contextlib.suppress(Exception):
                node_ops.remove_node(run, nodes[name], nodes)
