"""Issue 12 on the strict bed: guest addresses as real VMware Tools report them, thin-disk space."""

from __future__ import annotations

import json

import requests

from tests.e2e.helpers import write_cluster


def _deploy(cli, cluster, ova, vcsim, *extra):
    return cli(
        ["deploy", "-c", str(cluster), "--count", "3", "--ova", str(ova["ova"]),
         "--trusted-key", str(ova["key"]), "--json", *extra],
        env=vcsim.env(),
    )


def test_static_nodes_join_though_tools_report_link_local_then_an_overlay(cli, strict_vcsim, strict_guestsim,
                                                                         signed_ova, subnet, tmp_path):
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, extra={"wait": {"timeout": 45}})
    run = _deploy(cli, cluster, signed_ova, strict_vcsim)
    assert run.returncode == 0, run.stderr
    nodes = {n["name"]: n for n in json.loads(run.stdout)["nodes"]}
    assert {n: s["ip"] for n, s in nodes.items()} == {f"lab-0{i}": f"{subnet}.1{i}" for i in (1, 2, 3)}
    assert all(s["healthy"] for s in nodes.values())
    # status reaches etcd at the configured addresses too, whatever guest.ipAddress says by now.
    status = cli(["status", "-c", str(cluster), "--json"], env=strict_vcsim.env())
    assert status.returncode == 0, status.stderr
    assert {n["name"]: n["ip"] for n in json.loads(status.stdout)["nodes"]} == {n: s["ip"] for n, s in nodes.items()}


def test_dhcp_nodes_use_their_first_nics_lease(cli, strict_vcsim, strict_guestsim, signed_ova, subnet, tmp_path):
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet,
                            extra={"node": {"network": {"mode": "dhcp"}}, "wait": {"timeout": 60}})
    run = _deploy(cli, cluster, signed_ova, strict_vcsim)
    assert run.returncode == 0, run.stderr
    nodes = json.loads(run.stdout)["nodes"]
    for node in nodes:
        leased = strict_guestsim.node(node["name"])["ip"]
        assert node["ip"] == leased and leased.startswith(f"{subnet}.1")
        listing = requests.post(f"http://{leased}:2379/v3/cluster/member/list", json={}, timeout=5).json()
        assert sorted(m["name"] for m in listing["members"]) == ["lab-01", "lab-02", "lab-03"]
        assert all(u.startswith(f"http://{subnet}.1") for m in listing["members"] for u in m["peerURLs"])
