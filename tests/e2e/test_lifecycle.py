"""Lifecycle end to end: status, scale up and down, rolling rebuild with data, teardown, locking."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.harness.bed import signed_image
from tests.harness.runner import VMCOREOS
from tests.e2e import etcdclient
from tests.e2e.helpers import api_vm, image_args, inventory, plant_vm, write_cluster
from tests.harness import textfile


def _deploy(cli, cluster, ova, env, count=3, *extra):
    run = cli(["deploy", "-c", str(cluster), "--count", str(count), "--json", *image_args(ova), *extra], env=env)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def newer_ova(tmp_path_factory, signer):
    """A second build of the image, as a new release would be."""
    return signed_image(tmp_path_factory.mktemp("newer"), signer, disk_bytes=4 << 20, seed=7)


def _status(cli, cluster, env):
    run = cli(["status", "-c", str(cluster), "--json"], env=env)
    return run.returncode, json.loads(run.stdout)


def test_status_reports_health_leader_and_drift(cli, vcsim, guestsim, signed_ova, subnet, tmp_path, env):
    cluster = write_cluster(tmp_path / "c.yaml", subnet)
    _deploy(cli, cluster, signed_ova, env)
    code, data = _status(cli, cluster, env)
    assert code == 0
    rows = {n["name"]: n for n in data["nodes"]}
    assert sorted(rows) == ["lab-01", "lab-02", "lab-03"]
    assert all(r["healthy"] and r["power"] == "poweredOn" and not r["drift"] for r in rows.values())
    assert sum(r["leader"] for r in rows.values()) == 1
    assert all(r["image_version"].startswith("local-") for r in rows.values())

    # A changed node config shows as drift; a powered-off node makes status fail.
    (tmp_path / "cc.yaml").write_text("#cloud-config\nssh_authorized_keys: [ssh-ed25519 AAAA test]\n")
    cluster = write_cluster(tmp_path / "c.yaml", subnet, config="cc.yaml")
    with api_vm(vcsim, "lab-03") as vm:
        vm.PowerOffVM_Task()
    deadline = time.monotonic() + 30
    while True:
        code, data = _status(cli, cluster, env)
        rows = {n["name"]: n for n in data["nodes"]}
        if not rows["lab-03"]["healthy"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert code == 1
    assert rows["lab-03"]["power"] == "poweredOff" and not rows["lab-03"]["healthy"]
    assert all(r["drift"] for r in rows.values())


def test_scale_three_five_three_keeps_membership_and_keys(cli, vcsim, guestsim, signed_ova, subnet, tmp_path, env):
    cluster = write_cluster(tmp_path / "c.yaml", subnet)
    _deploy(cli, cluster, signed_ova, env)
    ep = f"http://{subnet}.11:2379"
    written = etcdclient.write_keys(ep, 200)

    up = _deploy(cli, cluster, signed_ova, env, count=5)
    assert sorted(up["created"]) == ["lab-04", "lab-05"] and up["uploaded"] is False
    assert sorted(m["name"] for m in etcdclient.members(ep)) == [f"lab-0{i}" for i in range(1, 6)]
    assert etcdclient.get_prefix(f"http://{subnet}.15:2379", "/data/") == written

    down = _deploy(cli, cluster, signed_ova, env, 3, "--yes")  # a scale-down removes nodes: confirmed
    assert sorted(down["removed"]) == ["lab-04", "lab-05"]
    assert sorted(m["name"] for m in etcdclient.members(ep)) == ["lab-01", "lab-02", "lab-03"]
    assert etcdclient.get_prefix(ep, "/data/") == written
    names = {n for n, v in inventory(vcsim).items() if v["extra"].get("vmcoreos.cluster") == "lab" and not v["template"]}
    assert names == {"lab-01", "lab-02", "lab-03"}


@pytest.fixture
def release(tmp_path, signer):
    """A Flatcar-layout release server with 4593.2.5 as stable's current release."""
    from tests.harness.release_server import ReleaseServer, ReleaseTree

    tree = ReleaseTree(tmp_path / "srv", signer)
    tree.publish("4593.2.5", disk_bytes=2 << 20)
    with ReleaseServer(tree.root) as server:
        yield tree, server


def _channel_cluster(tmp_path, subnet, server, signer):
    key = signer.write_public_key(tmp_path / "release-key.asc")
    image = {"distro": "flatcar", "channel": "stable", "version": "current",
             "base_url": f"{server.url}/stable/amd64-usr/", "trusted_keys": [str(key)]}
    return write_cluster(tmp_path / "c.yaml", subnet, extra={"image": image})


def test_rebuild_rolls_onto_the_channels_new_release_keeping_data_and_a_leader(
        cli, vcsim, guestsim, release, signer, subnet, tmp_path, env):
    tree, server = release
    cluster = _channel_cluster(tmp_path, subnet, server, signer)
    run = cli(["deploy", "-c", str(cluster), "--json"], env=env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["image_version"] == "4593.2.5"
    endpoints = [f"http://{subnet}.1{i}:2379" for i in (1, 2, 3)]
    written = etcdclient.write_keys(endpoints[0], 1000)

    # Nothing newer yet: cron's run prints nothing and exits 0.
    quiet = cli(["rebuild", "-c", str(cluster), "--quiet"], env=env)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")

    tree.publish("4593.3.0", disk_bytes=2 << 20)
    prom = tmp_path / "textfile" / "vmcoreos.prom"
    prom.parent.mkdir()
    with etcdclient.LeaderWatch(endpoints) as watch:
        run = cli(["rebuild", "-c", str(cluster), "--json", "--metrics-file", str(prom)], env=env)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert sorted(result["rebuilt"]) == ["lab-01", "lab-02", "lab-03"] and result["uploaded"] is True
    # What a monitor reads of it, through node_exporter's textfile collector.
    exposition = textfile.scrape(prom.parent)
    assert textfile.scrape_error(exposition) == 0
    got = textfile.samples(exposition, "vmcoreos_")
    labels = frozenset({("command", "rebuild"), ("cluster", "lab")})
    assert got[("vmcoreos_last_run_exit_code", labels)] == 0 and got[("vmcoreos_last_run_nodes_replaced", labels)] == 3
    assert got[("vmcoreos_last_success_timestamp_seconds", labels)] == got[("vmcoreos_last_run_timestamp_seconds", labels)]
    assert got[("vmcoreos_last_run_duration_seconds", labels)] > 0

    code, data = _status(cli, cluster, env)
    assert code == 0
    assert {r["image_version"] for r in data["nodes"]} == {"4593.3.0"}
    for ep in endpoints:
        assert etcdclient.get_prefix(ep, "/data/") == written
    assert watch.samples > 20
    # etcd's election timeout here is 1 s: never without a leader for longer than one election.
    assert watch.longest_gap < 2.0, watch.longest_gap

    # A channel that moves back never triggers a downgrade.
    tree.set_current("4593.2.5")
    again = cli(["rebuild", "-c", str(cluster), "--quiet"], env=env)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


def test_an_old_image_served_as_a_new_release_is_refused_on_rebuild_and_on_a_fresh_host(
        cli, vcsim, guestsim, release, signer, subnet, tmp_path, env):
    # A newer release's signed version.txt beside an older release's signed OVA and .sig, no DIGESTS.
    import shutil

    from tests.harness.release_server import FILE_PREFIX

    tree, server = release
    cluster = _channel_cluster(tmp_path, subnet, server, signer)
    assert cli(["deploy", "-c", str(cluster), "--json"], env=env).returncode == 0
    deployed = {n: vm["extra"].get("vmcoreos.image_sha512") for n, vm in inventory(vcsim).items() if n.startswith("lab-0")}
    assert len(set(deployed.values())) == 1 and len(deployed) == 3

    old = tree.publish("4459.2.4", disk_bytes=2 << 20, signed_at=int(time.time()) - 60 * 86400, current=False)
    new = tree.publish("4593.3.0", disk_bytes=2 << 20, digests=None)
    ova = FILE_PREFIX["flatcar"] + ".ova"
    for suffix in ("", ".sig"):
        shutil.copyfile(old / (ova + suffix), new / (ova + suffix))
    tree.set_current("4593.3.0")
    server.clear_log()

    for cache in (env["VMCOREOS_CACHE_DIR"], str(tmp_path / "fresh-host-cache")):
        run = cli(["rebuild", "-c", str(cluster), "--json"], env={**env, "VMCOREOS_CACHE_DIR": cache})
        assert run.returncode == 3, run.output
        assert "more than 36 h apart" in json.loads(run.stdout)["error"]["message"]
        assert "Traceback" not in run.output
    assert server.gets(".ova") == []
    after = {n: vm["extra"] for n, vm in inventory(vcsim).items() if n.startswith("lab-")}
    assert {n: x.get("vmcoreos.image_sha512") for n, x in after.items() if x.get("vmcoreos.role") == "node"} == deployed
    assert not any(x.get("vmcoreos.image_version") == "4593.3.0" for x in after.values())


def test_rebuild_killed_half_way_resumes(cli, vcsim, guestsim, signed_ova, newer_ova, subnet, tmp_path, env):
    import os

    cluster = write_cluster(tmp_path / "c.yaml", subnet)
    _deploy(cli, cluster, signed_ova, env)
    written = etcdclient.write_keys(f"http://{subnet}.11:2379", 300)
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))}, **env}
    proc = subprocess.Popen(
        [VMCOREOS, "rebuild", "-c", str(cluster), *image_args(newer_ova)],
        env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        seen = ""
        for line in proc.stderr:
            seen += line
            if "creating on" in line:  # the first node was removed: kill it mid-roll
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert "member remove" in seen

    run = cli(["rebuild", "-c", str(cluster), "--json", *image_args(newer_ova)], env=env)
    assert run.returncode == 0, run.stderr
    code, data = _status(cli, cluster, env)
    assert code == 0
    assert len({r["image_version"] for r in data["nodes"]}) == 1
    assert sorted(m["name"] for m in etcdclient.members(f"http://{subnet}.12:2379")) == ["lab-01", "lab-02", "lab-03"]
    assert etcdclient.get_prefix(f"http://{subnet}.13:2379", "/data/") == written


def test_two_rebuilds_at_once_one_runs_one_exits_5(cli, vcsim, guestsim, signed_ova, newer_ova, subnet, tmp_path, env):
    import os

    cluster = write_cluster(tmp_path / "c.yaml", subnet)
    _deploy(cli, cluster, signed_ova, env)
    written = etcdclient.write_keys(f"http://{subnet}.11:2379", 100)
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))}, **env}
    args = [VMCOREOS, "rebuild", "-c", str(cluster), *image_args(newer_ova)]
    procs = [subprocess.Popen(args, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 5], outs
    loser = outs[[p.returncode for p in procs].index(5)][1]
    assert loser.strip().count("\n") == 0 and "holds the lock" in loser
    code, _ = _status(cli, cluster, env)
    assert code == 0
    assert etcdclient.get_prefix(f"http://{subnet}.12:2379", "/data/") == written


def test_destroy_spares_unmarked_and_foreign_vms(cli, vcsim, guestsim, signed_ova, subnet, tmp_path, env):
    cluster = write_cluster(tmp_path / "c.yaml", subnet)
    _deploy(cli, cluster, signed_ova, env)
    plant_vm(vcsim, "lab-04")  # named like a node, no mark
    plant_vm(vcsim, "other-01", {"vmcoreos.cluster": "other", "vmcoreos.role": "node"})

    # A node-named VM that is not ours stops a deploy that would need that name, naming it.
    run = cli(["deploy", "-c", str(cluster), "--count", "4", *image_args(signed_ova)], env=env)
    assert run.returncode == 1 and "lab-04" in run.stderr and "vmcoreos never touches" in run.stderr

    refused = cli(["destroy", "-c", str(cluster)], env=env)
    assert refused.returncode == 2 and "--yes" in refused.stderr

    run = cli(["destroy", "-c", str(cluster), "--yes", "--templates", "--json"], env=env)
    assert run.returncode == 0, run.stderr
    assert sorted(json.loads(run.stdout)["deleted"]) == ["lab-01", "lab-02", "lab-03", "lab-template-flatcar-" + _version(signed_ova)]
    left = inventory(vcsim)
    assert "lab-04" in left and "other-01" in left
    assert not [n for n, v in left.items() if v["extra"].get("vmcoreos.cluster") == "lab"]


def _version(ova) -> str:
    import hashlib

    h = hashlib.sha512(ova["ova"].read_bytes()).hexdigest()
    return f"local-{h[:12]}"
