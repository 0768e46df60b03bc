"""The cluster's VM-VM anti-affinity rule: DRS keeps the etcd members on different hosts.

One rule per vmcoreos cluster, `vmcoreos-<cluster>-etcd`, holding exactly the
cluster's node VMs. A rule of that name is treated as ours only while every VM
it holds is a node of this cluster (carries its marks): a rule someone else
made, or one holding a VM that is not ours, is left alone and reported.

Writing a rule takes Host.Inventory.ModifyCluster on the cluster; vCenter
refuses the call itself (NoPermission) without it, and that alone is not worth
failing a deploy for: the nodes are already placed apart (cluster/spread.py),
the rule only keeps DRS from moving them together later. So NoPermission comes
back as a warning text; every other refusal is an error.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from pyVmomi import vim, vmodl

from vmcoreos.errors import VSphereError
from vmcoreos.vsphere import vms
from vmcoreos.vsphere.faults import PermissionDenied
from vmcoreos.vsphere.session import Session
from vmcoreos.vsphere.waits import wait_task

PRIVILEGE = "Host.Inventory.ModifyCluster"


@dataclass(frozen=True)
class Written:
    """What a sync did: the rule written ("add", "edit", "remove") or None, and a warning for the user."""

    action: str | None = None
    warning: str | None = None


def rule_name(cluster: str) -> str:
    return f"vmcoreos-{cluster}-etcd"


def find(session: Session, compute, name: str):
    """The anti-affinity rule called name on the compute cluster, or None."""
    if not isinstance(compute, vim.ClusterComputeResource):
        return None
    got = session.retrieve([compute], ["configurationEx"], vim.ClusterComputeResource)[compute]
    rules = getattr(got.get("configurationEx"), "rule", None) or []
    return next((r for r in rules if r.name == name), None)


def _vm_props(session: Session, refs: list) -> dict:
    """name and extraConfig of each VM that still exists (a rule can name one deleted meanwhile)."""
    props = ["name", "config.extraConfig"]
    try:
        return session.retrieve(refs, props, vim.VirtualMachine)
    except vmodl.fault.ManagedObjectNotFound:
        found = {}
        for ref in refs:
            with contextlib.suppress(vmodl.fault.ManagedObjectNotFound):
                found.update(session.retrieve([ref], props, vim.VirtualMachine))
        return found


def _not_ours(session: Session, rule, cluster: str, allowed: set[str]) -> list[str]:
    """Names (or morefs) of the VMs in rule that are not nodes of cluster; VMs that no longer exist do not count."""
    refs = list(rule.vm or [])
    found = _vm_props(session, refs) if refs else {}
    out = []
    for ref, props in found.items():
        extra = vms.extra_config(props.get("config.extraConfig"))
        node = extra.get(vms.MARK_CLUSTER) == cluster and extra.get(vms.MARK_ROLE) == "node"
        if ref._moId not in allowed and not node:
            out.append(props.get("name") or ref._moId)
    return sorted(out)


def sync(session: Session, compute, cluster: str, members: list, *, mandatory: bool) -> Written:
    """Make the rule hold exactly members (VM refs); with fewer than two there is nothing to keep apart, and
    the rule goes. Says what was written, and a warning for the user when the rule could not be."""
    name = rule_name(cluster)
    rule = find(session, compute, name)
    want = {m._moId: m for m in members}
    if rule is not None:
        strangers = _not_ours(session, rule, cluster, set(want))
        if strangers:
            return Written(warning=f"DRS rule {name!r} holds {', '.join(strangers)}, which vmcoreos did not create,"
                           " so it is not ours and was left alone; rename that rule so vmcoreos can keep its"
                           " members apart")
    if len(want) < 2:
        return _write(session, compute, name, "remove", rule) if rule is not None else Written()
    if rule is None:
        info = vim.cluster.AntiAffinityRuleSpec(name=name, enabled=True, mandatory=mandatory, vm=list(want.values()))
        return _write(session, compute, name, "add", info)
    have = {v._moId for v in rule.vm or []}
    if have == set(want) and rule.enabled and bool(rule.mandatory) == mandatory:
        return Written()
    info = vim.cluster.AntiAffinityRuleSpec(name=name, key=rule.key, enabled=True, mandatory=mandatory,
                                            vm=list(want.values()))
    return _write(session, compute, name, "edit", info)


def remove(session: Session, compute, cluster: str) -> Written:
    """destroy: the rule goes (if ours); a warning when it could not."""
    rule = find(session, compute, rule_name(cluster))
    if rule is None:
        return Written()
    strangers = _not_ours(session, rule, cluster, set())
    if strangers:
        return Written(warning=f"DRS rule {rule.name!r} holds {', '.join(strangers)}, which vmcoreos did not create;"
                       " it was left in place")
    return _write(session, compute, rule.name, "remove", rule)


def _write(session: Session, compute, name: str, operation: str, info) -> Written:
    if operation == "remove":
        spec = vim.cluster.RuleSpec(operation="remove", removeKey=info.key)
    else:
        spec = vim.cluster.RuleSpec(operation=operation, info=info)
    verbs = {"add": ("create", "creating"), "edit": ("update", "updating"), "remove": ("remove", "removing")}
    verb, what = verbs[operation]
    try:
        task = compute.ReconfigureComputeResource_Task(spec=vim.cluster.ConfigSpecEx(rulesSpec=[spec]), modify=True)
    except (vim.fault.NoPermission, PermissionDenied) as exc:  # the session's guard raises the latter
        privilege = getattr(exc, "privilegeId", None) or PRIVILEGE
        return Written(warning=f"could not {verb} DRS rule {name!r}: your vCenter user lacks {privilege} on the"
                       " cluster; the members were placed apart, but DRS may later move them together: grant it and"
                       " run deploy again")
    except vmodl.MethodFault as exc:
        raise VSphereError(f"{what} DRS rule {name!r} failed: {exc.msg or type(exc).__name__}") from None
    wait_task(session, task, what=f"{what} DRS rule {name}")
    return Written(action=operation)
