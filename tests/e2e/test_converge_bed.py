"""Converge on the bed: an edit to the cluster file reaches running nodes, planned with reasons, rolled safely."""

from __future__ import annotations

import json
import time

from tests.e2e import etcdclient
from tests.e2e.helpers import inventory, write_cluster

from tests.e2e.helpers import image_args

CONFIG = "#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: hello\n"
EDITED = "#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: edited\nssh_authorized_keys: [ssh-ed25519 AAAA t]\n"


def _run(cli, env, *args):
    return cli(list(args), env=env)


def _nodes(vcsim) -> dict:
    return {n: v for n, v in inventory(vcsim).items()
            if v["extra"].get("vmcoreos.cluster") == "lab" and not v["template"]}


def _healthy(subnet) -> list[str]:
    return sorted(m["name"] for m in etcdclient.members(f"http://{subnet}.11:2379"))


def test_an_edited_config_and_cpus_reach_every_node_by_a_rolling_replacement(
        cli, vcsim, guestsim, signed_ova, subnet, tmp_path, env):
    (tmp_path / "cc.yaml").write_text(CONFIG)
    cluster = write_cluster(tmp_path / "c.yaml", subnet, config="cc.yaml")
    first = _run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova), "--json")
    assert first.returncode == 0, first.stderr
    before = _nodes(vcsim)
    assert {v["cpus"] for v in before.values()} == {1}
    written = etcdclient.write_keys(f"http://{subnet}.11:2379", 20)

    # The edit: a changed node config and cpus 1 -> 2.
    (tmp_path / "cc.yaml").write_text(EDITED)
    cluster = write_cluster(tmp_path / "c.yaml", subnet, config="cc.yaml", extra={"node": {"cpus": 2}})
    why = ["config changed (ssh_authorized_keys, write_files)", "cpus 1 → 2"]

    # status says the same reasons in its drift column; the dry run lists each node's action and reasons.
    status = _run(cli, env, "status", "-c", str(cluster), "--json")
    assert [(n["name"], n["reasons"]) for n in json.loads(status.stdout)["nodes"]] == [
        (f"lab-0{i}", why) for i in (1, 2, 3)]
    dry = _run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["nodes"] == [
        {"name": f"lab-0{i}", "action": "replace", "reasons": why} for i in (1, 2, 3)]
    # Off a terminal, replacing running nodes needs --yes: one line, nothing touched.
    refused = _run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova))
    assert refused.returncode == 2 and refused.stderr.splitlines()[-1] == (
        "vmcoreos: error: deploy would replace lab-01, lab-02, lab-03 (they differ from the cluster file); refusing"
        " without a terminal to ask on: pass --yes to confirm, or --dry-run to see the plan")
    assert _nodes(vcsim) == before

    rolled = _run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova), "--yes", "--json")
    assert rolled.returncode == 0, rolled.stderr
    result = json.loads(rolled.stdout)
    assert [(n["name"], n["action"], n["healthy"]) for n in result["nodes"]] == [
        (f"lab-0{i}", "replaced", True) for i in (1, 2, 3)]
    # One at a time, leader last, the data read back through each new member before the next.
    order = [line for line in rolled.stderr.splitlines() if ": replace: " in line]
    assert len(order) == 3 and all(why[0] in line for line in order)
    assert rolled.stderr.count("reads the data written before the roll") == 3
    after = _nodes(vcsim)
    assert {v["cpus"] for v in after.values()} == {2}
    render = json.loads(_run(cli, env, "render", "-c", str(cluster), "--json").stdout)
    assert {n: v["extra"]["vmcoreos.config_digest"] for n, v in after.items()} == {
        n["name"]: n["digest"] for n in render["nodes"]}
    assert _healthy(subnet) == ["lab-01", "lab-02", "lab-03"]
    assert etcdclient.get_prefix(f"http://{subnet}.12:2379", "/data/") == written

    # Converged: a plain re-run changes nothing and says so, quickly.
    start = time.monotonic()
    again = _run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova), "--json")
    took = time.monotonic() - start
    assert again.returncode == 0, again.stderr
    assert [n["action"] for n in json.loads(again.stdout)["nodes"]] == ["unchanged"] * 3
    assert took < 10, took  # the process start included; the bed's own share is measured in the report


def test_cpus_alone_are_a_rolling_reconfigure_and_a_stopped_node_is_started(
        cli, vcsim, guestsim, signed_ova, subnet, tmp_path, env):
    cluster = write_cluster(tmp_path / "c.yaml", subnet)
    assert _run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova)).returncode == 0
    refs = {n: v["extra"]["vmcoreos.config_digest"] for n, v in _nodes(vcsim).items()}

    cluster = write_cluster(tmp_path / "c.yaml", subnet, extra={"node": {"cpus": 2, "memory_mb": 1024}})
    dry = json.loads(_run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova), "--dry-run", "--json").stdout)
    assert {n["action"] for n in dry["nodes"]} == {"reconfigure"}
    assert dry["nodes"][0]["reasons"] == ["cpus 1 → 2", "memory 512 → 1024 MB"]
    done = _run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova), "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert [n["action"] for n in json.loads(done.stdout)["nodes"]] == ["reconfigured"] * 3
    nodes = _nodes(vcsim)
    assert {(v["cpus"], v["memory_mb"]) for v in nodes.values()} == {(2, 1024)}
    # The same VMs (a reconfigure, not a replacement), every member healthy again.
    assert {n: v["extra"]["vmcoreos.config_digest"] for n, v in nodes.items()} == refs
    assert _healthy(subnet) == ["lab-01", "lab-02", "lab-03"]

    # Powered off by hand: the dry run says start, and the result says started.
    from tests.e2e.helpers import api_vm

    with api_vm(vcsim, "lab-02") as vm:
        from pyVim.task import WaitForTask

        WaitForTask(vm.PowerOffVM_Task())
    dry = json.loads(_run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova), "--dry-run", "--json").stdout)
    assert [n["action"] for n in dry["nodes"]] == ["keep", "start", "keep"]
    started = _run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova), "--json")
    assert started.returncode == 0, started.stderr
    assert [n["action"] for n in json.loads(started.stdout)["nodes"]] == ["unchanged", "started", "unchanged"]


def test_a_changed_network_moves_the_nodes_and_a_scale_up_clones_onto_it(
        cli, vcsim, guestsim, signed_ova, subnet, tmp_path, env):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=2)
    assert _run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova)).returncode == 0
    assert {tuple(v["networks"]) for v in _nodes(vcsim).values()} == {("VM Network",)}

    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=2, extra={"vsphere": {"network": "DVS0/DC0_DVPG0"}})
    planned = _run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova), "--count", "3", "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    dry = json.loads(planned.stdout)
    assert dry["nodes"] == [{"name": "lab-01", "action": "replace", "reasons": ["network VM Network → DC0_DVPG0"]},
                            {"name": "lab-02", "action": "replace", "reasons": ["network VM Network → DC0_DVPG0"]},
                            {"name": "lab-03", "action": "create", "reasons": ["missing"]}]
    up = _run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova), "--count", "3", "--yes", "--json")
    assert up.returncode == 0, up.stderr
    assert "lab-03: cloning from" in up.stderr and "onto network DC0_DVPG0" in up.stderr
    assert {n: tuple(v["networks"]) for n, v in _nodes(vcsim).items()} == {
        f"lab-0{i}": ("DC0_DVPG0",) for i in (1, 2, 3)}
    assert _healthy(subnet) == ["lab-01", "lab-02", "lab-03"]


def test_rebuild_from_cron_applies_config_drift_and_a_one_off_count_is_not_remembered(
        cli, vcsim, guestsim, signed_ova, subnet, tmp_path, env):
    (tmp_path / "cc.yaml").write_text(CONFIG)
    cluster = write_cluster(tmp_path / "c.yaml", subnet, config="cc.yaml")
    assert _run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova)).returncode == 0
    written = etcdclient.write_keys(f"http://{subnet}.11:2379", 10)

    (tmp_path / "cc.yaml").write_text(CONFIG + "ssh_authorized_keys: [ssh-ed25519 AAAA t]\n")
    dry = _run(cli, env, "rebuild", "-c", str(cluster), *image_args(signed_ova), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["nodes"] == [
        {"name": f"lab-0{i}", "action": "replace", "reasons": ["config changed (ssh_authorized_keys)"]} for i in (1, 2, 3)]
    # Unattended (stdin is not a terminal, no --yes): rebuild applies the drift and never asks.
    rolled = _run(cli, env, "rebuild", "-c", str(cluster), *image_args(signed_ova))
    assert rolled.returncode == 0, rolled.stderr
    names, _, version = rolled.stdout.strip().removeprefix("rebuilt ").partition(" on ")
    assert sorted(names.split(", ")) == ["lab-01", "lab-02", "lab-03"] and version.startswith("local-")
    status = json.loads(_run(cli, env, "status", "-c", str(cluster), "--json").stdout)
    assert [(n["reasons"], n["healthy"]) for n in status["nodes"]] == [([], True)] * 3
    assert etcdclient.get_prefix(f"http://{subnet}.13:2379", "/data/") == written
    again = _run(cli, env, "rebuild", "-c", str(cluster), *image_args(signed_ova))
    assert again.returncode == 0 and "nothing to do" in again.stdout

    # --count 4 is a one-off: the next plain run plans lab-04's removal and asks, naming the file's count.
    up = _run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova), "--count", "4")
    assert up.returncode == 0, up.stderr
    assert "count: 4 nodes (--count, a one-off: the cluster file says 3" in up.stderr
    plain = _run(cli, env, "deploy", "-c", str(cluster), *image_args(signed_ova))
    assert plain.returncode == 2 and plain.stderr.splitlines()[-1] == (
        "vmcoreos: error: deploy would remove lab-04 (the cluster file's count 3 is below the cluster's size);"
        " refusing without a terminal to ask on: pass --yes to confirm, or --dry-run to see the plan")
    assert "lab-04" in _nodes(vcsim)
