"""Membership decisions: the live view, health, when a node has joined, quorum, and who leads next.

The rules are pure functions of a member list and health answers, so they
are tested as tables; the few functions that ask etcd say so and take an
endpoint and the run's Client, never a Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from vmcoreos.errors import EtcdError
from vmcoreos.etcd.client import Client
from vmcoreos.etcd.trust import check_view
from vmcoreos.etcd.view import ClusterView, Member


def quorum(size: int) -> int:
    return size // 2 + 1


# -- joined ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JoinState:
    """How far a node got: stage None (etcd did not answer), 'etcd reachable', 'member listed', 'healthy'."""

    stage: str | None
    member_id: str | None = None
    leader: bool = False

    @property
    def joined(self) -> bool:
        return self.stage == "healthy"


def listed(view: ClusterView, name: str) -> Member | None:
    """The member named `name` when it is listed with client URLs (started, not merely added)."""
    member = view.by_name(name)
    return member if member is not None and member.client_urls else None


def join_state(view: ClusterView | None, name: str, healthy: bool) -> JoinState:
    """The joined rule: listed by name with client URLs, and its own /health says true."""
    if view is None:
        return JoinState(None)
    member = listed(view, name)
    if member is None:
        return JoinState("etcd reachable")
    if not healthy:
        return JoinState("member listed", member.id)
    return JoinState("healthy", member.id, view.leader == member.id)


def probe_join(client: Client, endpoint: str, name: str) -> JoinState:
    """Ask the node's own etcd at endpoint how far it has joined (health only once it is listed)."""
    try:
        view = client.member_list(endpoint)
    except Exception:  # not up yet: refused, reset, or answering garbage while it starts
        return JoinState(None)
    return join_state(view, name, listed(view, name) is not None and client.healthy(endpoint))


# -- the live view and its health -----------------------------------------------------------


def first_view(client: Client, endpoints: Iterable[str], cluster: str) -> tuple[str, ClusterView] | None:
    """The member list from the first endpoint that answers, checked (check_view) before it is used.

    A list that answers but names members or URLs vmcoreos never made stops
    the run (EtcdError) instead of being skipped: it is never used.
    """
    for endpoint in endpoints:
        try:
            view = client.member_list(endpoint)
        except Exception:
            continue
        return endpoint, check_view(view, cluster, endpoint)
    return None


def health(client: Client, view: ClusterView) -> dict[str, bool]:
    """member id -> healthy, asking each member on its own client URLs."""
    return {m.id: bool(m.client_urls) and any(client.healthy(u) for u in m.client_urls) for m in view.members}


# -- removing a member -------------------------------------------------------------------------


def check_removal(view: ClusterView, health: dict[str, bool], member: Member, node: str) -> None:
    """Refuse to remove `member` (node `node`) when the healthy members left would be below quorum."""
    size = len(view.members) - 1
    healthy_after = sum(ok for mid, ok in health.items() if mid != member.id)
    if size and healthy_after < quorum(size):
        raise EtcdError(
            f"removing {node} would leave {healthy_after} healthy of {size} members, below quorum"
            f" ({quorum(size)}); repair the unhealthy members first (`vmcoreos status`)"
        )


def needs_new_leader(view: ClusterView, member: Member) -> bool:
    """Leadership moves first when the leader itself is removed and members remain."""
    return view.leader == member.id and len(view.members) > 1


def next_leader(view: ClusterView, leader: Member, health: dict[str, bool]) -> Member | None:
    """The member leadership moves to: the first healthy other member; None when there is none to ask."""
    if not leader.client_urls:
        return None
    return next((m for m in view.members if m.id != leader.id and health.get(m.id)), None)
