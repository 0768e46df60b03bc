"""The roll's ordering, against a fake cluster (vSphere inventory and etcd faked at the Run's edges)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from vmcoreos import etcd
from vmcoreos.cluster import converge, members
from vmcoreos.cluster.desired import Desired, sections_mark
from vmcoreos.cluster.results import NodeStatus, RunResult
from vmcoreos.errors import EtcdError
from vmcoreos.guest.configvalues import NodeConfig
from vmcoreos.vsphere.vminfo import MARK_CLUSTER, MARK_DIGEST, MARK_ROLE, MARK_SECTIONS, VmInfo

WANT = Desired("flatcar", None, 4, 2048)


def _config(i, text="#cloud-config\nhostname: x\n"):
    import ipaddress

    return NodeConfig(f"lab-0{i}", i, ipaddress.IPv4Interface(f"10.0.0.{i}/24"), text, {}, f"d{i}{len(text)}")


def _vm(config, cpus):
    extra = {MARK_CLUSTER: "lab", MARK_ROLE: "node", MARK_DIGEST: config.digest, MARK_SECTIONS: sections_mark(config)}
    return VmInfo(object(), config.name, False, "poweredOn", None, f"10.0.0.{config.index}", extra, cpus=cpus,
                  memory_mb=2048)


@dataclass
class FakeMembers:
    """etcd as the roll sees it: a leader, health per member, a canary key store."""

    leader: str
    sick: set = field(default_factory=set)
    client: object = None  # the run's etcd client; the key calls it goes to are faked

    def view(self, nodes):
        members = [etcd.Member(n[-1], n, (f"http://10.0.0.{n[-1]}:2380",), (f"http://10.0.0.{n[-1]}:2379",))
                   for n in sorted(nodes)]
        return etcd.ClusterView(members, leader=self.leader[-1])

    def live_view(self, nodes, exclude=frozenset()):
        return ("http://10.0.0.1:2379", self.view({n for n in nodes if n not in exclude}))

    def leader_name(self, nodes):
        return self.leader

    def health(self, view):
        return {m.id: m.name not in self.sick for m in view.members}

    def peer_url(self, ip):
        return f"http://{ip}:2380"

    def endpoint_at(self, ip):
        return f"http://{ip}:2379"


class FakeRun:
    name = "lab"
    settings = type("S", (), {"wait_timeout": 60.0})()

    def __init__(self, nodes, members, log):
        self.nodes, self.members, self.log = nodes, members, log
        self.reporter = type("R", (), {"event": lambda s, m: None, "stage": lambda s, n, st: None})()

    def inventory(self):
        return type("I", (), {"nodes": dict(self.nodes)})()


@pytest.fixture
def faked(monkeypatch):
    log: list[tuple[str, str]] = []
    store: dict[str, str] = {}

    def put(client, endpoint, key, value):
        store[key] = value
        return True

    monkeypatch.setattr(etcd, "put_key", put)
    monkeypatch.setattr(etcd, "get_key", lambda client, endpoint, key: (log.append(("read", endpoint)), store.get(key))[1])
    return log


def _wire(monkeypatch, run, configs):
    ops = converge.node_ops
    import vmcoreos.cluster.template as template

    monkeypatch.setattr(template, "check_privileges", lambda run_: run.log.append(("privileges", "")))

    def check(run_, nodes, skip, skip_peer=None):
        run.log.append(("check", skip))
        return original_check(run_, nodes, skip, skip_peer)

    original_check = converge.check_healthy
    monkeypatch.setattr(converge, "check_healthy", check)
    monkeypatch.setattr(ops, "remove_node", lambda r, vm, nodes: (run.log.append(("remove", vm.name)),
                                                                  run.nodes.pop(vm.name)))

    def join(r, made, image, config, endpoint):
        run.log.append(("join", config.name))
        run.nodes[config.name] = _vm(config, 4)

    monkeypatch.setattr(ops, "join", join)

    def resize(r, vm, nodes):
        run.log.append(("resize", vm.name))
        run.nodes[vm.name] = _vm(configs[vm.name], 4)

    monkeypatch.setattr(ops, "resize", resize)
    monkeypatch.setattr(converge, "wait_joined", lambda r, cs, deadline: {c.name: NodeStatus(c.name) for c in cs})


def test_followers_first_leader_last_each_step_checked_and_its_data_read_back(monkeypatch, faked):
    old = {i: _config(i) for i in (1, 2, 3)}
    new = {1: _config(1, "#cloud-config\nhostname: y\n"), 2: old[2], 3: _config(3, "#cloud-config\nhostname: y\n")}
    nodes = {c.name: _vm(c, 2) for c in old.values()}
    run = FakeRun(nodes, FakeMembers(leader="lab-01"), faked)
    _wire(monkeypatch, run, {c.name: c for c in new.values()})
    result = RunResult("lab", [])
    converge.roll(run, list(new.values()), WANT, result, template=lambda: (object(), type("Img", (), {"version": "1"})()))
    assert faked == [
        ("privileges", ""),
        ("check", "lab-02"), ("resize", "lab-02"), ("read", "http://10.0.0.2:2379"),  # cpus only: resized
        ("check", "lab-03"), ("remove", "lab-03"), ("join", "lab-03"), ("read", "http://10.0.0.3:2379"),
        ("check", "lab-01"), ("remove", "lab-01"), ("join", "lab-01"), ("read", "http://10.0.0.1:2379"),  # leader
    ]
    assert (result.reconfigured, result.rebuilt) == (["lab-02"], ["lab-03", "lab-01"])


@pytest.fixture
def quick_settle(monkeypatch):
    monkeypatch.setattr(members, "HEALTH_SETTLE", 0.3)
    monkeypatch.setattr(members, "HEALTH_RECHECK", 0.05)


class Recovering(FakeMembers):
    """lab-03 answers unhealthy the first `times` asks, as a member does while an election settles."""

    def __init__(self, leader, times):
        super().__init__(leader, sick={"lab-03"})
        self.asks, self.times = 0, times

    def health(self, view):
        self.asks += 1
        if self.asks > self.times:
            self.sick = set()
        return super().health(view)


def test_a_member_unhealthy_for_a_moment_is_asked_again_and_the_roll_goes_on(monkeypatch, faked, quick_settle):
    configs = {i: _config(i) for i in (1, 2, 3)}
    members = Recovering("lab-01", times=2)
    run = FakeRun({c.name: _vm(c, 2) for c in configs.values()}, members, faked)
    _wire(monkeypatch, run, {c.name: c for c in configs.values()})
    converge.roll(run, list(configs.values()), WANT, RunResult("lab", []), template=lambda: None)
    assert ("resize", "lab-02") in faked and members.asks >= 3


class Silent(FakeMembers):
    """No member answers the member list the first `times` asks, as while an election settles."""

    def __init__(self, leader, times):
        super().__init__(leader)
        self.lists, self.times = 0, times

    def live_view(self, nodes, exclude=frozenset()):
        self.lists += 1
        return None if self.lists <= self.times else super().live_view(nodes, exclude)


@pytest.mark.parametrize("times, stops", [(2, False), (1000, True)])
def test_silence_before_a_step_is_asked_again_and_only_lasting_silence_stops_the_roll(monkeypatch, faked,
                                                                                      quick_settle, times, stops):
    configs = {i: _config(i) for i in (1, 2, 3)}
    run = FakeRun({c.name: _vm(c, 2) for c in configs.values()}, Silent("lab-01", times), faked)
    _wire(monkeypatch, run, {c.name: c for c in configs.values()})
    monkeypatch.setattr(converge, "_write_canary", lambda run_, nodes: None)  # the roll's first list, not this one
    if stops:
        with pytest.raises(EtcdError, match="no etcd member answers; the cluster is down"):
            converge.roll(run, list(configs.values()), WANT, RunResult("lab", []), template=lambda: None)
        assert [step for step in faked if step[0] == "resize"] == []
    else:
        converge.roll(run, list(configs.values()), WANT, RunResult("lab", []), template=lambda: None)
        assert ("resize", "lab-02") in faked


def test_a_sick_member_stops_the_roll_before_anything_is_touched(monkeypatch, faked, quick_settle):
    configs = {i: _config(i) for i in (1, 2, 3)}
    nodes = {c.name: _vm(c, 2) for c in configs.values()}
    run = FakeRun(nodes, FakeMembers(leader="lab-01", sick={"lab-03"}), faked)
    _wire(monkeypatch, run, {c.name: c for c in configs.values()})
    started = time.monotonic()
    with pytest.raises(EtcdError, match="etcd members lab-03 are not healthy; the roll stops before lab-02"):
        converge.roll(run, list(configs.values()), WANT, RunResult("lab", []), template=lambda: None)
    assert 0.3 <= time.monotonic() - started < 5  # asked again for the settle time, and no longer
    assert faked == [("privileges", ""), ("check", "lab-02")]


def test_a_node_an_earlier_run_already_changed_is_skipped(monkeypatch, faked):
    configs = {i: _config(i) for i in (1, 2)}
    nodes = {"lab-01": _vm(configs[1], 4), "lab-02": _vm(configs[2], 2)}
    run = FakeRun(nodes, FakeMembers(leader="lab-02"), faked)
    _wire(monkeypatch, run, {c.name: c for c in configs.values()})
    converge.roll(run, list(configs.values()), WANT, RunResult("lab", []), template=lambda: None)
    assert [step for step in faked if step[0] not in ("read", "privileges")] == [("check", "lab-02"), ("resize", "lab-02")]


def test_a_changed_node_that_loses_the_data_stops_the_roll(monkeypatch, faked):
    configs = {i: _config(i) for i in (1, 2)}
    run = FakeRun({c.name: _vm(c, 2) for c in configs.values()}, FakeMembers(leader="lab-01"), faked)
    _wire(monkeypatch, run, {c.name: c for c in configs.values()})
    monkeypatch.setattr(etcd, "get_key", lambda client, endpoint, key: "something else")
    with pytest.raises(EtcdError, match="lab-02 is a healthy member but does not return the key written before"):
        converge.roll(run, list(configs.values()), WANT, RunResult("lab", []), template=lambda: None)
    assert ("resize", "lab-01") not in faked
