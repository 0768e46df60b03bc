"""deploy --count 3 end to end: vcsim, the guest simulator and real etcd members."""

from __future__ import annotations

import json

import requests

from tests.e2e.helpers import api_vm, inventory, write_cluster
from vmcoreos.guest import compose, nodeconfig
from vmcoreos.clusterfile import load_cluster_file


def _deploy(cli, cluster, signed_ova, vcsim, *extra):
    return cli(
        ["deploy", "-c", str(cluster), "--count", "3", "--ova", str(signed_ova["ova"]),
         "--trusted-key", str(signed_ova["key"]), "--json", *extra],
        env=vcsim.env(),
    )


def test_deploy_three_nodes_join_etcd_and_rerun_changes_nothing(cli, vcsim, guestsim, signed_ova, subnet, tmp_path):
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet)

    first = _deploy(cli, cluster, signed_ova, vcsim)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["uploaded"] is True
    assert sorted(result["created"]) == ["lab-01", "lab-02", "lab-03"]

    vms = inventory(vcsim)
    nodes = {n: v for n, v in vms.items() if v["extra"].get("vmcoreos.cluster") == "lab"}
    templates = [n for n, v in nodes.items() if v["template"]]
    assert sorted(n for n, v in nodes.items() if not v["template"]) == ["lab-01", "lab-02", "lab-03"]
    assert len(templates) == 1
    assert all(nodes[n]["power"] == "poweredOn" for n in ("lab-01", "lab-02", "lab-03"))

    # Three healthy etcd members, listed by name, each with client URLs, as etcd itself reports.
    ips = {f"lab-0{i}": f"{subnet}.1{i}" for i in (1, 2, 3)}
    listing = requests.post(f"http://{ips['lab-01']}:2379/v3/cluster/member/list", json={}, timeout=5).json()
    members = {m["name"]: m for m in listing["members"]}
    assert sorted(members) == ["lab-01", "lab-02", "lab-03"]
    for name, ip in ips.items():
        assert members[name]["clientURLs"] == [f"http://{ip}:2379"]
        assert requests.get(f"http://{ip}:2379/health", timeout=5).json()["health"] == "true"

    # What each guest decoded from its guestinfo is exactly the config rendered for it.
    settings = load_cluster_file(cluster)
    planned = compose.node_configs(settings, nodeconfig.load_user_config(settings), count=3)
    for config in planned:
        node = guestsim.node(config.name)
        assert node["user_data"] == config.config_text
        assert node["hostname"] == config.name
        assert node["ip"] == config.ip
        assert not node["errors"]

    second = _deploy(cli, cluster, signed_ova, vcsim)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["uploaded"] is False and again["created"] == []
    assert {n["name"]: n["action"] for n in again["nodes"]} == {"lab-01": "unchanged", "lab-02": "unchanged", "lab-03": "unchanged"}
    assert inventory(vcsim).keys() == vms.keys()


def test_linked_clones_grow_from_a_snapshot_of_the_template(cli, vcsim, guestsim, signed_ova, subnet, tmp_path):
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, extra={"node": {"linked_clone": True}})
    run = _deploy(cli, cluster, signed_ova, vcsim)
    assert run.returncode == 0, run.stderr
    template = json.loads(run.stdout)["template"]
    with api_vm(vcsim, template) as tpl:
        assert tpl.config.template
        assert [s.name for s in tpl.snapshot.rootSnapshotList] == ["vmcoreos-linked-clone-base"]
