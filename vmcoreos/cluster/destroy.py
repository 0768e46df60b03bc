"""destroy: power off and delete the cluster's VMs (and templates), each mark checked again just before.

plan(run, templates=) -> DestroyPlan, apply(run, plan) -> RunResult (its `removed` lists what was deleted).
"""

from __future__ import annotations

from vmcoreos.cluster import spread
from vmcoreos.cluster.parallel import first_failure, run_all
from vmcoreos.cluster.plan import DestroyPlan, plan_destroy
from vmcoreos.cluster.results import RunResult
from vmcoreos.cluster.run import Run
from vmcoreos.vsphere import vms


def plan(run: Run, *, templates: bool) -> DestroyPlan:
    return plan_destroy(run.inventory(), templates=templates)


def apply(run: Run, planned: DestroyPlan) -> RunResult:
    session = run.session

    def one(vm: vms.VmInfo) -> str:
        fresh = vms.refresh(session, vm)
        vms.require_owned(fresh, planned.cluster, "delete")
        run.reporter.event(f"{fresh.name}: powering off and deleting")
        vms.destroy(session, fresh, planned.cluster)
        return fresh.name

    # The DRS rule first, while its VMs still show they are ours; then nodes, then templates.
    # An interrupt drops what has not started (cluster/parallel.py).
    spread.drop_rule(session, planned.cluster, planned.nodes, run.reporter)
    result = RunResult(planned.cluster, [])
    for batch in (planned.nodes, planned.templates):
        futures = run_all(one, [(vm,) for vm in batch], run.parallel)
        first_failure(futures)
        result.removed += [f.result() for f in futures]
    return result
