"""The decisions, as pure functions of intent (node configs, flags) and what exists (Inventory, etcd's view).

Nothing here talks to vSphere or etcd: each plan is a value the CLI can
show or confirm, and the executors (deploy, rebuild, destroy) carry out
exactly that value. This is where scale up/down and the roll order are
decided; quorum, the joined rule and leader choice are etcd's
(vmcoreos/etcd/membership.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vmcoreos import naming
from vmcoreos.guest.configvalues import NodeConfig
from vmcoreos.vsphere import vms
from vmcoreos.cluster.inventory import Inventory

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


@dataclass(frozen=True)
class DeployPlan:
    cluster: str
    configs: tuple[NodeConfig, ...]  # every node the cluster file wants
    inventory: Inventory
    remove: tuple[str, ...] = ()  # ours, beyond the wanted count, in removal order
    power_on: tuple[str, ...] = ()  # ours, wanted, not running
    create: tuple[NodeConfig, ...] = ()  # wanted, missing

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.configs]

    def steps(self) -> list[tuple[str, str]]:
        """(node, action) in the order apply takes them: remove first, then start, create or keep."""
        create = {c.name for c in self.create}
        return [(n, "remove") for n in self.remove] + [
            (n, "create" if n in create else "start" if n in self.power_on else "keep") for n in self.names
        ]


def plan_deploy(configs: list[NodeConfig], inventory: Inventory) -> DeployPlan:
    """Scale decisions: which nodes go, which start, which are made. A foreign VM under a wanted name stops it."""
    wanted = {c.name for c in configs}
    for vm in inventory.foreign:
        if vm.name in wanted:
            vms.require_owned(vm, inventory.cluster, "use")
    nodes = inventory.nodes
    return DeployPlan(
        inventory.cluster,
        tuple(configs),
        inventory,
        remove=tuple(removal_order(inventory.cluster, (n for n in nodes if n not in wanted))),
        power_on=tuple(sorted(n for n in nodes if n in wanted and nodes[n].power != "poweredOn")),
        create=tuple(c for c in configs if c.name not in nodes),
    )


# -- rebuild ----------------------------------------------------------------------------

_RELEASE = re.compile(r"[0-9]+(\.[0-9]+)*")


def runs_older(vm: vms.VmInfo, distro: str, version: str) -> bool:
    """True when the node should move to the target image (distro, version).

    Release versions (4593.2.5) only move forward, so a channel that briefly
    serves an older release never triggers a downgrade; local builds have no
    order, so any different build counts.
    """
    current = vm.extra.get(vms.MARK_VERSION)
    if current is None:
        return True
    if current == version:
        return False
    if vm.extra.get(vms.MARK_DISTRO) != distro:
        return True
    if _RELEASE.fullmatch(current) and _RELEASE.fullmatch(version):
        return tuple(map(int, current.split("."))) < tuple(map(int, version.split(".")))
    return True


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
    version: str | None  # None: a local --ova not read yet (dry run): every node may need replacing
    force: bool = False
    pending: tuple[NodeConfig, ...] = ()  # to replace, in roll order once ordered by the leader
    done: tuple[NodeConfig, ...] = ()  # already on the target (an interrupted run's work)

    @property
    def message(self) -> str:
        return "" if self.pending else f"all nodes run {self.version}; nothing to do"

    def steps(self) -> list[tuple[str, str]]:
        """(node, action): a missing node is created, an older one replaced, one on the target kept."""
        pending = {c.name for c in self.pending}
        nodes = self.inventory.nodes
        # An OVA not read yet (dry run) may be the build a node already runs.
        replace = "replace" if self.version is not None else "replace unless on the OVA's build"
        return [(c.name, "keep" if c.name not in pending else replace if c.name in nodes else "create")
                for c in self.configs]


def plan_rebuild(configs: list[NodeConfig], inventory: Inventory, distro: str, version: str | None, *,
                 force: bool = False) -> RebuildPlan:
    nodes = inventory.nodes
    pending = [c for c in configs
               if c.name not in nodes or force or version is None or runs_older(nodes[c.name], distro, version)]
    if force and not pending:
        pending = list(configs)
    done = [c for c in configs if c.name in nodes and c not in pending]
    return RebuildPlan(inventory.cluster, tuple(configs), inventory, distro, version, force, tuple(pending), tuple(done))


# -- destroy ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DestroyPlan:
    cluster: str
    nodes: list[vms.VmInfo]
    templates: list[vms.VmInfo]
    skipped: list[str] = field(default_factory=list)  # named like ours, not marked ours

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.nodes + self.templates]

    def steps(self) -> list[tuple[str, str]]:
        return ([(v.name, "remove") for v in self.nodes] + [(v.name, "remove template") for v in self.templates]
                + [(n, "leave (not marked ours)") for n in self.skipped])


def plan_destroy(inventory: Inventory, *, templates: bool) -> DestroyPlan:
    return DestroyPlan(
        inventory.cluster,
        [inventory.nodes[n] for n in sorted(inventory.nodes)],
        sorted(inventory.templates, key=lambda v: v.name) if templates else [],
        sorted(v.name for v in inventory.foreign),
    )
