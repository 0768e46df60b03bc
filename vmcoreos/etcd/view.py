"""What a member list says: the members, the leader, and which etcd cluster answered."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Member:
    id: str  # hex, as etcdctl prints it
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False


@dataclass
class ClusterView:
    members: list[Member]
    leader: str | None = None  # hex id
    source: str = ""
    extra: dict = field(default_factory=dict)
    cluster_id: str | None = None  # hex: v3 header.cluster_id, or v2's X-Etcd-Cluster-Id

    def by_name(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)
