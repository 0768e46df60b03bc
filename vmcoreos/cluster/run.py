"""One command's working set: settings, the vSphere session and placement, the parsed user config.

Every executor takes a Run instead of reaching into a do-everything class;
`inventory()` is the one place a run lists vSphere, and callers decide when
a fresh listing is worth its round trips.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from vmcoreos import environment, naming
from vmcoreos.cluster import inventory as inv
from vmcoreos.cluster import parallel
from vmcoreos.cluster.desired import Desired
from vmcoreos.cluster.members import Members
from vmcoreos.guest.configvalues import UserConfig
from vmcoreos.reporting import QuietReporter, Reporter
from vmcoreos.connection import Connection
from vmcoreos.settings import ClusterSettings
from vmcoreos.vsphere import targets
from vmcoreos.vsphere.targets import Placement
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
            self.placement = targets.locate(self.session, self.settings.vsphere)
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

    def desired(self, version: str | None, nodes=()) -> Desired:
        """What the cluster file asks of every node; version None leaves the image out of the comparison.

        A node may be on any of vsphere.datastores (placement spreads them). The names of networks and
        datastores nodes are on now are read (one listing each) only when a node is on another one than the
        file's, for the reasons' wording.
        """
        settings, where = self.settings, self.placement
        network = _moref(where.network)
        topo = getattr(where, "topology", None)
        stores = list(topo.datastores.values()) if topo is not None and topo.datastores else [where.datastore]
        datastores = tuple(m for m in (_moref(d) for d in stores) if m)
        names = {network: where.network_name} if network else {}
        if any(network and vm.networks and network not in vm.networks for vm in nodes):
            names.update(self._names("network"))
        if any(datastores and vm.datastores and not {_moref(d) for d in vm.datastores} & set(datastores)
               for vm in nodes):
            names.update(self._names("datastore"))
        wanted_names = ", ".join(topo.datastores) if topo is not None and topo.datastores else (
            settings.vsphere.datastore or ", ".join(datastores))
        return Desired(settings.image.distro, version, settings.node.cpus, settings.node.memory_mb,
                       network or None, where.network_name, datastores, wanted_names, names)

    def _names(self, kind: str) -> dict[str, str]:
        from pyVmomi import vim

        vim_kind = vim.Network if kind == "network" else vim.Datastore
        found = self.session.retrieve_all(self.placement.datacenter, vim_kind, ["name"])
        return {_moref(ref): props.get("name", "") for ref, props in found.items()}


def _moref(obj) -> str:
    return getattr(obj, "_moId", "") or ""


@contextlib.contextmanager
def open_run(prepared, conn: Connection, *, reporter: Reporter = QuietReporter(), lock: bool = True,
             parallel: int = 4, adopt_template: bool = False, cache_dir: Path | None = None,
             retries: int = 5) -> Iterator[Run]:
    """A Run on a fresh vSphere session, under this host's lock for the cluster unless lock=False.

    prepared: a Prepared (cluster/prepare.py), or for destroy the cluster file's settings alone: it renders
    no node config."""
    from vmcoreos.cluster.locking import session_for

    settings, user = (prepared, None) if isinstance(prepared, ClusterSettings) else (prepared.settings, prepared.user)
    with session_for(settings, conn, lock=lock) as session:
        yield Run(settings, session, reporter, user, parallel=parallel, adopt_template=adopt_template,
                  cache_dir=cache_dir, retries=retries)
