"""DHCP with Ignition in one boot, on Flatcar and Fedora CoreOS.

Ignition reads its config once, so nothing is rewritten after the lease: each node's etcd unit runs
the script vmcoreos wrote (run for real by the guest simulator, against an `ip` that shows the node's
links) to learn its own address, and the members find each other through discovery.
"""

from __future__ import annotations

import json

import requests
import yaml

from tests.e2e.helpers import CONFIGS, assert_guests_ok, deploy_three, fcos_cluster, inventory, member_list, write_cluster

DHCP = {"mode": "dhcp"}


def _assert_three_leased_members(guestsim, subnet):
    ips = {name: guestsim.node(name)["ip"] for name in ("lab-01", "lab-02", "lab-03")}
    assert all(ip.startswith(f"{subnet}.1") and guestsim.node(n)["ip_source"] == "dhcp" for n, ip in ips.items())
    members = member_list(f"http://{ips['lab-01']}:2379")
    assert sorted(members) == ["lab-01", "lab-02", "lab-03"]
    for name, ip in ips.items():
        assert members[name]["clientURLs"] == [f"http://{ip}:2379"]
        assert members[name]["peerURLs"] == [f"http://{ip}:2380"]
        assert requests.get(f"http://{ip}:2379/health", timeout=5).json()["health"] == "true"
        node = guestsim.node(name)
        assert node["boot_count"] == 1, "one boot: Ignition never runs twice"


def _flatcar_ignition_on_dhcp(tmp_path, subnet):
    """A cluster file: the shipped Flatcar Ignition example on DHCP, members found through discovery."""
    (tmp_path / "node.json").write_text((CONFIGS / "flatcar-ignition.json").read_text())
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, config="node.json",
                            extra={"etcd": {"bootstrap": "discovery"}})
    data = yaml.safe_load(cluster.read_text())
    data["node"]["network"] = DHCP
    cluster.write_text(yaml.safe_dump(data))
    return cluster


def test_flatcar_ignition_on_dhcp_joins_in_one_boot(cli, vcsim, guestsim, signed_ova, subnet, tmp_path,
                                                     discovery_etcd):
    cluster = _flatcar_ignition_on_dhcp(tmp_path, subnet)
    run = deploy_three(cli, cluster, signed_ova, vcsim, "--discovery-etcd", discovery_etcd)
    assert run.returncode == 0, run.stderr
    assert "booting it again" not in run.stderr
    assert_guests_ok(guestsim, "ignition")
    _assert_three_leased_members(guestsim, subnet)
    node = guestsim.node("lab-02")
    assert node["etcd"]["env"]["ETCD_ADVERTISE_CLIENT_URLS"] == f"http://{node['ip']}:2379"
    assert node["etcd"]["env"]["ETCD_DISCOVERY"].startswith(discovery_etcd)
    assert "guestinfo.afterburn.initrd.network-kargs" not in inventory(vcsim)["lab-02"]["extra"]


def test_fcos_on_dhcp_joins_in_one_boot(cli, vcsim, guestsim, fcos_stream, signer, subnet, tmp_path, env,
                                        discovery_etcd):
    cluster = fcos_cluster(tmp_path, subnet, fcos_stream, signer, network=DHCP, etcd={"bootstrap": "discovery"})
    run = cli(["deploy", "-c", str(cluster), "--count", "3", "--json", "--discovery-etcd", discovery_etcd], env=env)
    assert run.returncode == 0, run.stderr
    assert [n["action"] for n in json.loads(run.stdout)["nodes"]] == ["created"] * 3
    assert_guests_ok(guestsim, "ignition")
    _assert_three_leased_members(guestsim, subnet)
    env3 = guestsim.node("lab-03")["etcd"]["env"]
    assert env3["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == f"http://{guestsim.node('lab-03')['ip']}:2380"
    assert env3["ETCD_NAME"] == "lab-03"


def test_a_dhcp_ignition_node_joins_a_running_cluster_in_its_one_boot(cli, vcsim, guestsim, signed_ova, subnet,
                                                                      tmp_path, discovery_etcd):
    cluster = _flatcar_ignition_on_dhcp(tmp_path, subnet)
    assert deploy_three(cli, cluster, signed_ova, vcsim, "--discovery-etcd", discovery_etcd).returncode == 0
    run = cli(["deploy", "-c", str(cluster), "--count", "4", "--ova", str(signed_ova["ova"]), "--trusted-key",
               str(signed_ova["key"]), "--json", "--discovery-etcd", discovery_etcd], env=vcsim.env())
    assert run.returncode == 0, run.stderr
    node = guestsim.node("lab-04")
    assert node["boot_count"] == 1 and node["errors"] == []
    env4 = node["etcd"]["env"]
    assert env4["ETCD_INITIAL_CLUSTER_STATE"] == "existing" and "ETCD_DISCOVERY" not in env4
    assert env4["ETCD_INITIAL_CLUSTER"].endswith(f",lab-04=http://{node['ip']}:2380")
    assert env4["ETCD_INITIAL_CLUSTER"].count("=http://") == 4
    ip1 = guestsim.node("lab-01")["ip"]
    listing = requests.post(f"http://{ip1}:2379/v3/cluster/member/list", json={}, timeout=5).json()
    assert sorted(m["name"] for m in listing["members"]) == ["lab-01", "lab-02", "lab-03", "lab-04"]
    assert requests.get(f"http://{node['ip']}:2379/health", timeout=5).json()["health"] == "true"
