"""destroy: power off and delete the cluster's VMs (and templates), each mark checked again just before."""

from __future__ import annotations

from vmcoreos.cluster import inventory, spread
from vmcoreos.cluster.parallel import first_failure, run_all
from vmcoreos.cluster.plan import DestroyPlan, plan_destroy
from vmcoreos.reporting import Reporter
from vmcoreos.settings import ClusterSettings
from vmcoreos.vsphere import vms
from vmcoreos.vsphere.inventory import locate
from vmcoreos.vsphere.session import Session


def plan(settings: ClusterSettings, session: Session, *, templates: bool) -> DestroyPlan:
    found = inventory.take(session, locate(session, settings.vsphere), settings.name)
    return plan_destroy(found, templates=templates)


def apply(session: Session, planned: DestroyPlan, *, reporter: Reporter, parallel: int = 4) -> list[str]:
    def one(vm: vms.VmInfo) -> str:
        fresh = vms.refresh(session, vm)
        vms.require_owned(fresh, planned.cluster, "delete")
        reporter.event(f"{fresh.name}: powering off and deleting")
        vms.destroy(session, fresh, planned.cluster)
        return fresh.name

    # The DRS rule first, while its VMs still show they are ours; then nodes, then templates.
    # An interrupt drops what has not started (cluster/parallel.py).
    spread.drop_rule(session, planned.cluster, planned.nodes, reporter)
    done = []
    for batch in (planned.nodes, planned.templates):
        futures = run_all(one, [(vm,) for vm in batch], parallel)
        first_failure(futures)
        done += [f.result() for f in futures]
    return done
