"""deploy: converge the cluster to the wanted nodes, scaling down first, then up, one membership change at a time."""

from __future__ import annotations

import contextlib

from vmcoreos.cluster import nodes as node_ops
from vmcoreos.cluster import spread
from vmcoreos.cluster.locking import cluster_lock
from vmcoreos.cluster.plan import DeployPlan, plan_deploy, removal_order
from vmcoreos.prepare import Prepared
from vmcoreos.cluster.results import RunResult
from vmcoreos.cluster.run import Run
from vmcoreos.cluster import template
from vmcoreos.cluster.template import PlannedImage
from vmcoreos.cluster.joining import KEPT, join_deadline, wait_joined
from vmcoreos.errors import EtcdError, NotJoinedError
from vmcoreos.vsphere import vms


def plan(run: Run, prepared: Prepared) -> DeployPlan:
    return plan_deploy(list(prepared.configs), run.inventory())


def plan_image(run: Run, planned: DeployPlan) -> PlannedImage | None:
    """For a dry run: the image new nodes would get (release metadata only); None when nothing is created."""
    if not planned.create:
        return None
    return template.plan_image(run, planned.inventory.nodes.values(), planned.inventory.templates)


def apply(run: Run, planned: DeployPlan, *, rollback: bool = False) -> RunResult:
    settings, session = run.settings, run.session
    nodes = dict(planned.inventory.nodes)
    configs = list(planned.configs)
    result = RunResult(settings.name, [])
    with cluster_lock(run, nodes):
        for name in planned.remove:
            node_ops.remove_node(run, nodes.pop(name), nodes)
            result.removed.append(name)
        spread.keep_rule(run, nodes)  # the rule holds the nodes that stay (and those made before it existed)
        for name in planned.power_on:
            run.reporter.event(f"{name}: powering on")
            vms.power_on(session, nodes[name])
        try:
            # A new cluster's members share the deadline bootstrap started; every other node has joined
            # already or was only powered on, and gets wait.timeout from here.
            deadline = _create(run, planned, nodes, result) if planned.create else None
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
    created = set(result.created)
    for config in configs:
        st = status[config.name]
        st.action = "created" if config.name in created else "unchanged"
        st.drift = False
        result.nodes.append(st)
    return result


def _create(run: Run, planned: DeployPlan, nodes, result: RunResult) -> float | None:
    """Make the missing nodes; a new cluster's join deadline (its members are awaited together), else None."""
    missing = list(planned.create)
    templates = planned.inventory.templates
    template.check_privileges(run, templates)
    pending = template.begin_streamed(run, templates, nodes.values())
    if pending is not None:
        # A fresh local OVA: the upload's read is its verification, and the template is trusted after it.
        with pending:
            template.check_room(run, None, lambda: pending, templates, len(missing))
            image, made = template.stream_template(run, pending)
    else:
        image = template.resolve_image(run, nodes.values())
        # The run's one opening of the verified OVA, if any: the room check and the import read the same
        # archive, and with the template present (linked clones) neither opens it.
        with contextlib.ExitStack() as stack:
            opened = []

            def archive():
                from vmcoreos.images.streamed import upload_read

                if not opened:
                    opened.append(stack.enter_context(upload_read(image)))
                return opened[0]

            template.check_room(run, image, archive, templates, len(missing))
            made = template.ensure_template(run, image, templates, opened[0] if opened else None)
    result.image_version = image.version
    result.uploaded, result.template = made.uploaded, made.name
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
