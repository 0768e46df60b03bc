"""The decisions, as pure functions of intent (node configs, flags) and what exists (Inventory, etcd's view).

Nothing here talks to vSphere or etcd: each plan is a value the CLI can
show or confirm, and the executors (deploy, rebuild, destroy) carry out
exactly that value. This is where scale up/down and the roll order are
decided; quorum, the joined rule and leader choice are etcd's
(vmcoreos/etcd/membership.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from vmcoreos import naming
from vmcoreos.cluster.desired import Desired, Drift, drift, runs_older
from vmcoreos.cluster.inventory import Inventory
from vmcoreos.guest.configvalues import NodeConfig
from vmcoreos.vsphere.vminfo import VmInfo, require_owned

__all__ = ["CountSource", "DeployPlan", "DestroyPlan", "RebuildPlan", "Step", "plan_deploy", "plan_destroy", "plan_rebuild",
           "removal_order", "roll_order", "runs_older", "sick_members"]


class Step(NamedTuple):
    """One node's line of a plan: what happens to it and why."""

    node: str
    action: str  # create, keep, start, remove, replace, reconfigure
    reasons: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"name": self.node, "action": self.action, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class CountSource:
    """How many nodes the plan wants, and who said so."""

    count: int
    file_count: int  # what the cluster file says
    flag: bool = False  # --count was given

    def __str__(self) -> str:
        if not self.flag:
            return f"{self.count} nodes (count in the cluster file)"
        if self.count == self.file_count:
            return f"{self.count} nodes (--count, as the cluster file says)"
        return (f"{self.count} nodes (--count, a one-off: the cluster file says {self.file_count}, and a later run"
                " without --count converges back to that)")

# -- health before a roll step --------------------------------------------------------


def sick_members(view, health: dict[str, bool], skip: str, skip_peer: str | None = None) -> list[str]:
    """Members other than the one being replaced that are not healthy.

    The one being replaced may show up by name, or (added by an interrupted
    run, never started) only by its peer URL.
    """
    return [
        m.name or m.id
        for m in view.members
        if not health.get(m.id) and m.name != skip and not (skip_peer and skip_peer in m.peer_urls)
    ]


# -- scale up and down ----------------------------------------------------------------


def removal_order(cluster: str, names) -> list[str]:
    """Highest node number first, so a cluster shrinks from its end."""
    return sorted(names, key=lambda n: -(naming.node_index(cluster, n) or 0))


def _drifted(configs, nodes: dict[str, VmInfo], want: Desired | None) -> dict[str, Drift]:
    if want is None:
        return {}
    found = {c.name: drift(nodes[c.name], c, want) for c in configs if c.name in nodes}
    return {n: d for n, d in found.items() if d.action}


@dataclass(frozen=True)
class DeployPlan:
    cluster: str
    configs: tuple[NodeConfig, ...]  # every node the cluster file wants
    inventory: Inventory
    remove: tuple[str, ...] = ()  # ours, beyond the wanted count, in removal order
    power_on: tuple[str, ...] = ()  # ours, wanted, not running, nothing else to change
    create: tuple[NodeConfig, ...] = ()  # wanted, missing
    drift: dict[str, Drift] = field(default_factory=dict)  # wanted, existing, differing: replace or reconfigure
    count: CountSource | None = None
    image: Any = None  # the image new and replaced nodes get (template.PlannedImage), once looked up

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.configs]

    @property
    def changes(self) -> tuple[NodeConfig, ...]:
        """Running nodes to replace or reconfigure, in node order (apply rolls them leader last)."""
        return tuple(c for c in self.configs if c.name in self.drift)

    @property
    def replaces(self) -> bool:
        return any(d.replace for d in self.drift.values())

    @property
    def idle(self) -> bool:
        return not (self.remove or self.power_on or self.create or self.drift)

    def steps(self) -> list[Step]:
        """In the order apply takes them: remove first, then start, create, replace/reconfigure or keep."""
        create = {c.name for c in self.create}
        out = [Step(n, "remove", ("beyond the wanted count",)) for n in self.remove]
        for n in self.names:
            if n in create:
                out.append(Step(n, "create", ("missing",)))
            elif n in self.drift:
                out.append(Step(n, self.drift[n].action, self.drift[n].reasons))
            elif n in self.power_on:
                out.append(Step(n, "start", ("powered off",)))
            else:
                out.append(Step(n, "keep"))
        return out


def plan_deploy(configs: list[NodeConfig], inventory: Inventory, want: Desired | None = None, *,
                count: CountSource | None = None) -> DeployPlan:
    """Scale and converge decisions: which nodes go, which start, which are made, which differ from the file.

    A foreign VM under a wanted name stops it."""
    wanted = {c.name for c in configs}
    for vm in inventory.foreign:
        if vm.name in wanted:
            require_owned(vm, inventory.cluster, "use")
    nodes = inventory.nodes
    drifted = _drifted(configs, nodes, want)
    return DeployPlan(
        inventory.cluster,
        tuple(configs),
        inventory,
        remove=tuple(removal_order(inventory.cluster, (n for n in nodes if n not in wanted))),
        power_on=tuple(sorted(n for n in nodes if n in wanted and nodes[n].power != "poweredOn" and n not in drifted)),
        create=tuple(c for c in configs if c.name not in nodes),
        drift=drifted,
        count=count,
    )


# -- rebuild ----------------------------------------------------------------------------

def roll_order(pending: list[NodeConfig], existing, leader: str | None) -> list[NodeConfig]:
    """Missing nodes first (an interrupted run left the cluster a member short), then followers, leader last.

    Replacing followers first means one leader election for the whole roll, not one per node.
    """
    return sorted(pending, key=lambda c: (c.name in existing, c.name == leader, c.index))


@dataclass(frozen=True)
class RebuildPlan:
    cluster: str
    configs: tuple[NodeConfig, ...]
    inventory: Inventory
    distro: str
    version: str | None  # None: a local --ova not read yet (dry run): its build is not known
    force: bool = False
    pending: tuple[NodeConfig, ...] = ()  # to create, replace or reconfigure
    done: tuple[NodeConfig, ...] = ()  # nothing to change (an interrupted run's work, or never drifted)
    drift: dict[str, Drift] = field(default_factory=dict)  # why each existing pending node changes
    image: Any = None  # the image (source.VerifiedImage, or template.PlannedImage for a dry run)

    @property
    def message(self) -> str:
        return "" if self.pending else f"all nodes run {self.version} as the cluster file asks; nothing to do"

    def steps(self) -> list[Step]:
        pending = {c.name for c in self.pending}
        nodes = self.inventory.nodes
        out = []
        for c in self.configs:
            if c.name not in nodes:
                out.append(Step(c.name, "create", ("missing",)))
            elif c.name in self.drift:
                out.append(Step(c.name, self.drift[c.name].action, self.drift[c.name].reasons))
            elif c.name in pending and self.version is None:
                current = nodes[c.name].extra.get("vmcoreos.image_version") or "an unrecorded image"
                out.append(Step(c.name, "replace if the OVA's build differs",
                                (f"runs {current}; the dry run does not read a local OVA to learn its build",)))
            elif c.name in pending:
                out.append(Step(c.name, "replace", ("--force",)))
            else:
                out.append(Step(c.name, "keep"))
        return out


def plan_rebuild(configs: list[NodeConfig], inventory: Inventory, want: Desired, *, force: bool = False) -> RebuildPlan:
    """Every node that differs from the cluster file (a newer release included) is pending; --force: all of them."""
    nodes = inventory.nodes
    drifted = _drifted(configs, nodes, want)
    pending = [c for c in configs if c.name not in nodes or c.name in drifted or force or want.version is None]
    done = [c for c in configs if c.name in nodes and c not in pending]
    return RebuildPlan(inventory.cluster, tuple(configs), inventory, want.distro, want.version, force, tuple(pending),
                       tuple(done), drifted)


# -- destroy ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DestroyPlan:
    cluster: str
    nodes: list[VmInfo]
    templates: list[VmInfo]
    skipped: list[str] = field(default_factory=list)  # named like ours, not marked ours

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.nodes + self.templates]

    def steps(self) -> list[Step]:
        return ([Step(v.name, "remove") for v in self.nodes] + [Step(v.name, "remove template") for v in self.templates]
                + [Step(n, "leave (not marked ours)") for n in self.skipped])


def plan_destroy(inventory: Inventory, *, templates: bool) -> DestroyPlan:
    return DestroyPlan(
        inventory.cluster,
        [inventory.nodes[n] for n in sorted(inventory.nodes)],
        sorted(inventory.templates, key=lambda v: v.name) if templates else [],
        sorted(v.name for v in inventory.foreign),
    )
