"""One command's working set: settings, the vSphere session and placement, the parsed user config.

Every executor takes a Run instead of reaching into a do-everything class;
`inventory()` is the one place a run lists vSphere, and callers decide when
a fresh listing is worth its round trips.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vmcoreos import environment, naming
from vmcoreos.cluster import inventory as inv
from vmcoreos.cluster import parallel
from vmcoreos.cluster.members import Members
from vmcoreos.guest.configvalues import UserConfig
from vmcoreos.reporting import Reporter
from vmcoreos.settings import ClusterSettings
from vmcoreos.vsphere import inventory as placement_of
from vmcoreos.vsphere.inventory import Placement
from vmcoreos.vsphere.session import Session


@dataclass
class Run:
    settings: ClusterSettings
    session: Session
    reporter: Reporter
    user: UserConfig | None = None  # parsed once by prepare(); re-plans (DHCP leases, joins) reuse it
    parallel: int = 4
    adopt_template: bool = False  # --adopt-template: the operator vouches for an unrecorded template
    cache_dir: Path | None = None  # --cache-dir; None: the user cache dir
    retries: int = 5  # --retries, per image request
    placement: Placement | None = None
    members: Members = field(init=False)
    said: set = field(default_factory=set, init=False)  # placement warnings given this run (each once)
    replaced: dict = field(default_factory=dict, init=False)  # node -> Spot it had before this run removed it

    def __post_init__(self) -> None:
        self.parallel = max(1, self.parallel)
        self.cache_dir = environment.cache_dir(self.cache_dir)
        if self.placement is None:
            self.placement = placement_of.locate(self.session, self.settings.vsphere)
        self.members = Members(self.settings)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def dhcp(self) -> bool:
        return self.settings.node.network.mode == "dhcp"

    def inventory(self) -> inv.Inventory:
        found = inv.take(self.session, self.placement, self.settings.name)
        # A static node is reached at the address the cluster file gives it, never at what its guest
        # tools report (link-local or an overlay's while it boots, and untrusted).
        return found if self.dhcp else found.with_addresses(self.configured_address)

    def configured_address(self, name: str) -> str | None:
        """A static node's address from node.network.addresses; None under DHCP or past the list."""
        index = naming.node_index(self.name, name)
        addresses = self.settings.node.network.addresses
        if self.dhcp or index is None or not 1 <= index <= len(addresses):
            return None
        return str(addresses[index - 1].ip)

    def in_parallel(self, fn, calls: list[tuple]) -> None:
        """fn(*args) for each call, at most `parallel` at once; the first failure is raised once all ended.

        An interrupt stops them at once (cluster/parallel.py)."""
        parallel.first_failure(parallel.run_all(fn, calls, self.parallel))
