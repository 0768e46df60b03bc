"""What a run reports back: one NodeStatus per node, one RunResult per command."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class NodeStatus:
    name: str
    action: str = ""  # created / unchanged / started / removed / rebuilt
    power: str = ""
    tools: str | None = None
    ip: str | None = None
    image_version: str | None = None
    member_id: str | None = None
    healthy: bool = False
    leader: bool = False
    drift: bool = False
    stage: str = "planned"
    host: str | None = None  # the ESXi host it runs on
    datastore: str | None = None
    shares: str = ""  # status: "host with lab-02", "datastore with lab-03", when it shares one with other members

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RunResult:
    cluster: str
    nodes: list[NodeStatus]
    template: str | None = None
    image_version: str | None = None
    uploaded: bool = False
    created: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    message: str = ""
    etcd_answered: bool | None = None  # status: whether any etcd member answered (None: not asked)
    placement_degraded: bool | None = None  # status: members share a host or datastore though a free one exists
    drs_rule: str | None = None  # status on a DRS cluster: "exact", "missing" or "differs" (None: no DRS, < 2 nodes)

    def as_dict(self) -> dict:
        data = dict(self.__dict__)
        data["nodes"] = [n.as_dict() for n in self.nodes]
        return data

    @property
    def changed(self) -> bool:
        return bool(self.created or self.removed or self.rebuilt or self.uploaded)
