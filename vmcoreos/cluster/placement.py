"""Where each etcd member runs: a pure planner over usable hosts, datastores and the members that exist.

Three members survive one failure only if no two of them share what can fail
together: an ESXi host (a crash, a reboot, maintenance mode) or a datastore.
Nothing here talks to vSphere: the caller reads which hosts can run a node and
which datastores each mounts (vsphere/topology.py), and this module decides.

The rule, for every node to place, in order: among the (host, datastore) pairs
a usable host mounts, take the host with the fewest members, then the
datastore with the fewest, then the place the node had before (a rebuild puts
the replacement where the replaced member was), then the first by name (host)
and by the cluster file's order (datastore). That is round robin over usable
hosts, fewest members first, and it never puts two members on one host while
a free one exists.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Sequence


@dataclass(frozen=True)
class Spot:
    """Where one member runs (or will): host and datastore names; None when unknown."""

    host: str | None
    datastore: str | None


@dataclass(frozen=True)
class Spread:
    """The chosen spot per new node, and what the run should say once about it."""

    spots: dict[str, Spot]
    warnings: tuple[str, ...] = ()
    # True when every member can have a host of its own: the DRS rule can then be a "must".
    apart: bool = True


def choose(new: Sequence[str], mounts: Mapping[str, Sequence[str]], datastores: Sequence[str],
           members: Mapping[str, Spot], prefer: Mapping[str, Spot] | None = None) -> Spread:
    """A spot for each name in new, given the members that stay (members, by name).

    mounts: usable host -> the chosen datastores it mounts. datastores: the chosen ones, in the cluster
    file's order. prefer: where a node was before (a rebuild's replaced member), used on a tie.
    """
    prefer = prefer or {}
    stay = {n: s for n, s in members.items() if n not in new}
    hosts = Counter(s.host for s in stay.values() if s.host in mounts)
    stores = Counter(s.datastore for s in stay.values() if s.datastore in datastores)
    host_order = sorted(mounts)
    spots: dict[str, Spot] = {}
    for name in new:
        pairs = [(h, d) for h in host_order for d in datastores if d in mounts[h]]
        if not pairs:
            raise ValueError("no usable host mounts a chosen datastore")  # the caller refuses this earlier
        was = prefer.get(name)

        def rank(pair: tuple[str, str]) -> tuple:
            h, d = pair
            moved = 0 if was is not None and was.host == h else 1
            moved_ds = 0 if was is not None and was.datastore == d else 1
            return (hosts[h], stores[d], moved, moved_ds, host_order.index(h), list(datastores).index(d))

        host, store = min(pairs, key=rank)
        hosts[host] += 1
        stores[store] += 1
        spots[name] = Spot(host, store)
    total = len(stay) + len(new)
    return Spread(spots, tuple(_crowding(total, mounts, datastores)), total <= len(mounts))


def _crowding(total: int, mounts: Mapping[str, Sequence[str]], datastores: Sequence[str]) -> list[str]:
    """The warnings for more members than usable hosts (or named datastores): spread evenly, some share."""
    out = []
    if total > len(mounts):
        out.append(
            f"{total} etcd members on {len(mounts)} usable host(s): they are spread evenly, so some share a host"
            " and one host failure can cost more than one member; add hosts or bring one out of maintenance"
        )
    used = {d for ds in mounts.values() for d in ds}
    if len(datastores) > 1 and total > len(used):
        out.append(
            f"{total} etcd members on {len(used)} datastore(s): they are spread evenly, so some share one;"
            " name more datastores in vsphere.datastores"
        )
    return out


@dataclass(frozen=True)
class Sharing:
    """Members that share a host or datastore, and whether that could have been avoided."""

    shared_host: dict[str, tuple[str, ...]] = field(default_factory=dict)  # member -> the others on its host
    shared_datastore: dict[str, tuple[str, ...]] = field(default_factory=dict)
    degraded: bool = False  # members share although a usable host or a named datastore is free


def sharing(members: Mapping[str, Spot], usable_hosts: int, datastores: int) -> Sharing:
    """Who shares what, and whether placement is degraded: fewer distinct hosts (or datastores) in use than
    min(members, usable hosts) (or min(members, named datastores))."""

    def together(key) -> dict[str, tuple[str, ...]]:
        groups: dict[str, list[str]] = {}
        for name, spot in members.items():
            if key(spot) is not None:
                groups.setdefault(key(spot), []).append(name)
        return {n: tuple(sorted(o for o in g if o != n)) for g in groups.values() if len(g) > 1 for n in g}

    by_host = together(lambda s: s.host)
    by_store = together(lambda s: s.datastore)
    n = len(members)
    hosts_used = len({s.host for s in members.values() if s.host is not None})
    stores_used = len({s.datastore for s in members.values() if s.datastore is not None})
    degraded = hosts_used < min(n, usable_hosts) or (datastores > 1 and stores_used < min(n, datastores))
    return Sharing(by_host, by_store, degraded)
