"""What exists in vSphere for one cluster, taken in one listing and refreshed only when asked."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from vmcoreos import naming
from vmcoreos.vsphere.vminfo import VmInfo

if TYPE_CHECKING:  # the planners import Inventory and must not load pyVmomi
    from vmcoreos.vsphere.targets import Placement
    from vmcoreos.vsphere.session import Session


@dataclass(frozen=True)
class Inventory:
    """Ours (nodes by name, templates) and foreign: VMs named like ours without our mark."""

    cluster: str
    nodes: dict[str, VmInfo] = field(default_factory=dict)
    templates: tuple[VmInfo, ...] = ()
    foreign: tuple[VmInfo, ...] = ()

    @classmethod
    def sort(cls, cluster: str, found: list[VmInfo]) -> "Inventory":
        nodes, templates, foreign = {}, [], []
        for vm in found:
            if not vm.owned_by(cluster):
                foreign.append(vm)
            elif vm.template or vm.role == "template":
                templates.append(vm)
            elif naming.node_index(cluster, vm.name) is not None:
                nodes[vm.name] = vm
        return cls(cluster, nodes, tuple(templates), tuple(foreign))

    def with_addresses(self, address_of) -> "Inventory":
        """The same VMs with each node's ip replaced by address_of(name) where that gives one."""
        nodes = {n: replace(v, ip=address_of(n) or v.ip) for n, v in self.nodes.items()}
        return Inventory(self.cluster, nodes, self.templates, self.foreign)

    def without(self, name: str) -> "Inventory":
        return Inventory(self.cluster, {n: v for n, v in self.nodes.items() if n != name}, self.templates, self.foreign)


def take(session: "Session", placement: "Placement", cluster: str) -> Inventory:
    """One vSphere listing of every VM named like the cluster's, sorted by mark."""
    from vmcoreos.vsphere import vms

    found = vms.list_vms(session, placement, predicate=lambda n: naming.named_like_ours(cluster, n))
    return Inventory.sort(cluster, found)
