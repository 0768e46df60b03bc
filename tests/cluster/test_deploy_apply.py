"""deploy.apply carries out its plan in order: removals (highest first), starts, creations, the roll, one wait.

Against a fake cluster: the node operations, the lock and the waits are recorded instead of done.
"""

from __future__ import annotations

import contextlib

import pytest

from vmcoreos.cluster import deploy
from vmcoreos.cluster.desired import Desired, sections_mark
from vmcoreos.cluster.inventory import Inventory
from vmcoreos.cluster.plan import plan_deploy
from vmcoreos.cluster.results import NodeStatus
from vmcoreos.guest.configvalues import NodeConfig
from vmcoreos.vsphere.vminfo import MARK_CLUSTER, MARK_DIGEST, MARK_ROLE, MARK_SECTIONS, VmInfo

WANT = Desired("flatcar", None, 2, 2048)


def _config(i, text="#cloud-config\nhostname: x\n"):
    return NodeConfig(f"lab-0{i}", i, None, text, {}, f"d{i}{len(text)}")


def _vm(config, *, cpus=2, power="poweredOn"):
    extra = {MARK_CLUSTER: "lab", MARK_ROLE: "node", MARK_DIGEST: config.digest, MARK_SECTIONS: sections_mark(config)}
    return VmInfo(object(), config.name, False, power, None, None, extra, cpus=cpus, memory_mb=2048)


class FakeRun:
    name = "lab"

    def __init__(self, nodes, log):
        self.nodes, self.log = nodes, log
        self.reporter = type("R", (), {"event": lambda s, m: None, "stage": lambda s, n, st: None})()
        self.session = object()
        self.settings = type("S", (), {"wait_timeout": 60.0, "image": type("I", (), {"ova": None, "version": "current"})(),
                                       "name": "lab"})()

    def inventory(self):
        return Inventory("lab", dict(self.nodes))

    def desired(self, version, nodes=()):
        return WANT


@pytest.fixture
def recorded(monkeypatch):
    log: list[tuple] = []
    ops = deploy.node_ops
    monkeypatch.setattr(deploy, "cluster_lock", lambda run, nodes: _lock(log))
    monkeypatch.setattr(deploy.spread, "keep_rule", lambda run, nodes: None)  # placement's, tested on its own
    monkeypatch.setattr(ops, "remove_node", lambda run, vm, nodes: log.append(("remove", vm.name)))
    monkeypatch.setattr(deploy.power, "on", lambda session, vm: log.append(("power on", vm.name)))
    monkeypatch.setattr(deploy, "_template", lambda run, planned, n, result: (log.append(("template", n)), ("T", "I"))[1])
    monkeypatch.setattr(deploy, "_create", lambda run, planned, nodes, result, once: (
        once(), log.append(("create", [c.name for c in planned.create])), result.created.extend(
            c.name for c in planned.create))[-1])
    monkeypatch.setattr(deploy.converge, "roll", lambda run, pending, want, result, template: (
        log.append(("roll", [c.name for c in pending])), result.rebuilt.append(pending[0].name)))
    monkeypatch.setattr(deploy, "wait_joined", lambda run, configs, deadline: (
        log.append(("wait", [c.name for c in configs])), {c.name: NodeStatus(c.name) for c in configs})[1])
    monkeypatch.setattr(ops, "record_joined", lambda run, names: log.append(("record", names)))
    return log


@contextlib.contextmanager
def _lock(log):
    log.append(("lock",))
    yield
    log.append(("unlock",))


def test_removals_highest_first_then_starts_creations_the_roll_and_a_last_wait_all_under_the_lock(recorded):
    configs = [_config(1), _config(2), _config(3, "#cloud-config\nhostname: y\n"), _config(4)]
    old3 = _config(3)
    nodes = {"lab-01": _vm(configs[0]), "lab-02": _vm(configs[1], power="poweredOff"), "lab-03": _vm(old3),
             "lab-05": _vm(_config(5)), "lab-06": _vm(_config(6))}
    planned = plan_deploy(configs, Inventory("lab", nodes), WANT)
    result = deploy.apply(FakeRun(nodes, recorded), planned)
    assert recorded == [
        ("lock",), ("remove", "lab-06"), ("remove", "lab-05"), ("power on", "lab-02"),
        ("template", 1), ("create", ["lab-04"]),
        ("wait", ["lab-02"]),  # the node just started is a healthy member again before the roll checks every member
        ("roll", ["lab-03"]),
        ("wait", ["lab-01", "lab-02", "lab-03", "lab-04"]), ("record", ["lab-01", "lab-02", "lab-03", "lab-04"]),
        ("unlock",),
    ]
    assert [(n.name, n.action) for n in result.nodes] == [
        ("lab-01", "unchanged"), ("lab-02", "started"), ("lab-03", "replaced"), ("lab-04", "created")]
    assert [s["action"] for s in result.as_dict()["plan"]] == ["remove", "remove", "keep", "start", "replace", "create"]


def test_a_converged_cluster_is_one_wait_and_nothing_else(recorded):
    configs = [_config(1), _config(2)]
    nodes = {c.name: _vm(c) for c in configs}
    planned = plan_deploy(configs, Inventory("lab", nodes), WANT)
    assert planned.idle
    result = deploy.apply(FakeRun(nodes, recorded), planned)
    assert recorded == [("lock",), ("wait", ["lab-01", "lab-02"]), ("record", ["lab-01", "lab-02"]), ("unlock",)]
    assert not result.changed
