"""nodes.remove_node: etcd's member remove only while quorum holds without the member, then the VM deleted.

Against a fake run: the member list, health answers, the member remove and the deletion are recorded.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vmcoreos import etcd
from vmcoreos.cluster import members, nodes
from vmcoreos.errors import EtcdError
from vmcoreos.vsphere.vminfo import MARK_CLUSTER, MARK_ROLE, VmInfo

VIEW = etcd.ClusterView([etcd.Member(f"{i:x}", f"lab-0{i}", (f"http://10.0.0.{i}:2380",), (f"http://10.0.0.{i}:2379",))
                         for i in (1, 2, 3)], leader="1")


def _vm(i):
    return VmInfo(object(), f"lab-0{i}", False, "poweredOn", None, f"10.0.0.{i}", {MARK_CLUSTER: "lab", MARK_ROLE: "node"})


class FakeMembers:
    """Health as a list of answers, one per ask (the last one repeats)."""

    def __init__(self, answers, log):
        self.answers, self.log, self.asks, self.lock = answers, log, 0, None
        self.client = SimpleNamespace(member_remove=lambda endpoint, mid: log.append(("member remove", mid)))

    def live_view(self, nodes_, exclude=frozenset()):
        return "http://10.0.0.1:2379", VIEW

    def before_change(self, endpoint, view, nodes_):
        pass

    def health(self, view):
        answer = self.answers[min(self.asks, len(self.answers) - 1)]
        self.asks += 1
        return {m.id: m.id in answer for m in view.members}


@pytest.fixture
def run(monkeypatch):
    log: list[tuple] = []
    monkeypatch.setattr(members, "HEALTH_SETTLE", 0.3)
    monkeypatch.setattr(members, "HEALTH_RECHECK", 0.05)
    monkeypatch.setattr(nodes.spread, "leave", lambda run_, vm, nodes_: None)
    monkeypatch.setattr(nodes.vms, "destroy", lambda session, vm, cluster: log.append(("delete", vm.name)))
    events = SimpleNamespace(event=lambda m: None, stage=lambda n, s: None)
    return lambda answers: SimpleNamespace(name="lab", session=None, reporter=events, log=log,
                                           members=FakeMembers(answers, log))


def test_a_peer_unhealthy_for_a_moment_is_asked_again_and_the_member_goes(run):
    # Removing lab-03 leaves two members; both must be healthy. lab-02 answers unhealthy twice, then well.
    fake = run([{"1", "3"}, {"1", "3"}, {"1", "2", "3"}])
    nodes.remove_node(fake, _vm(3), {f"lab-0{i}": _vm(i) for i in (1, 2, 3)})
    assert fake.log == [("member remove", "3"), ("delete", "lab-03")]
    assert fake.members.asks == 3


def test_a_removal_that_would_break_quorum_is_refused_after_the_settle_time_and_nothing_is_touched(run):
    fake = run([{"1", "3"}])
    with pytest.raises(EtcdError, match="removing lab-03 would leave 1 healthy of 2 members, below quorum"):
        nodes.remove_node(fake, _vm(3), {f"lab-0{i}": _vm(i) for i in (1, 2, 3)})
    assert fake.log == [] and fake.members.asks > 2
