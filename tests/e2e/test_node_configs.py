"""Node configs end to end: every config kind and bootstrap joins a real etcd; bad configs touch nothing.

The guest simulator decodes guestinfo as coreos-cloudinit and Ignition do and
starts a real etcd per node, so a node joins only if its config would make a
real guest join.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import requests

from tests.e2e.helpers import (CONFIGS, assert_guests_ok, assert_three_joined, deploy_three, inventory, member_list,
                               write_cluster)

def test_etcd_member_dropin_static_bootstrap_joins(cli, vcsim, guestsim, signed_ova, subnet, tmp_path):
    shutil.copy(CONFIGS / "flatcar-etcd-member.yaml", tmp_path / "node.yaml")
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, config="node.yaml")

    run = deploy_three(cli, cluster, signed_ova, vcsim)
    assert run.returncode == 0, run.stderr
    assert_three_joined(subnet)
    assert_guests_ok(guestsim, "cloud-config")
    # The user's own drop-in reached etcd next to vmcoreos' membership.
    env = guestsim.node("lab-02")["etcd"]["env"]
    assert env["ETCD_HEARTBEAT_INTERVAL"] == "100"
    assert env["ETCD_INITIAL_CLUSTER_TOKEN"] == "vmcoreos-lab"


def test_discovery_etcd_mints_a_token_and_three_nodes_join(cli, vcsim, guestsim, signed_ova, subnet, tmp_path,
                                                             discovery_etcd):
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, extra={"etcd": {"bootstrap": "discovery"}})

    run = deploy_three(cli, cluster, signed_ova, vcsim, "--discovery-etcd", discovery_etcd)
    assert run.returncode == 0, run.stderr
    assert_three_joined(subnet)
    assert_guests_ok(guestsim, "cloud-config")
    env = guestsim.node("lab-01")["etcd"]["env"]
    token_url = env["ETCD_DISCOVERY"]
    assert token_url.startswith(discovery_etcd + "/v2/keys/_etcd/registry/")
    assert "ETCD_INITIAL_CLUSTER" not in env
    # The token says 3 and holds the three members' registrations.
    size = requests.get(token_url + "/_config/size", timeout=5).json()["node"]["value"]
    registered = requests.get(token_url, timeout=5).json()["node"]["nodes"]
    assert size == "3"
    assert sorted(n["value"].split("=", 1)[0] for n in registered if not n["key"].endswith("_config")) == [
        "lab-01", "lab-02", "lab-03"]


def _convert(cli, source: Path, out: Path) -> None:
    run = cli(["convert", str(source), "--to", "flatcar", "-o", str(out)])
    assert run.returncode == 0, run.stderr


def test_classic_etcd2_fleet_config_converted_gives_three_healthy_members(cli, vcsim, guestsim, signed_ova, subnet,
                                                                          tmp_path):
    shutil.copy(CONFIGS / "classic-etcd2-fleet.yaml", tmp_path / "classic.yaml")
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, config="classic.yaml")
    refused = deploy_three(cli, cluster, signed_ova, vcsim)
    assert refused.returncode == 2
    assert f"vmcoreos convert {tmp_path}/classic.yaml --to flatcar -o {tmp_path}/classic-flatcar.yaml" in refused.stderr
    assert not [n for n, v in inventory(vcsim).items() if v["extra"].get("vmcoreos.cluster") == "lab"]

    _convert(cli, tmp_path / "classic.yaml", tmp_path / "classic-flatcar.yaml")
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, config="classic-flatcar.yaml")
    run = deploy_three(cli, cluster, signed_ova, vcsim)
    assert run.returncode == 0, run.stderr
    assert_three_joined(subnet)
    assert_guests_ok(guestsim, "cloud-config")
    node = guestsim.node("lab-02")
    assert node["etcd"]["unit"] == "etcd-member.service"
    # The converted drop-in's $private_ipv4 URLs, substituted by the guest, and the v2 API for v2 clients.
    assert node["etcd"]["env"]["ETCD_LISTEN_PEER_URLS"] == f"http://{subnet}.12:2380"
    assert node["etcd"]["env"]["ETCD_HEARTBEAT_INTERVAL"] == "100"
    assert requests.get(f"http://{subnet}.12:2379/v2/members", timeout=5).status_code == 200


def test_legacy_etcd04_seed_is_refused_on_coreos_with_the_convert_command(cli, vcsim, guestsim, signed_ova, subnet,
                                                                          tmp_path):
    shutil.copy(CONFIGS / "seed-coreos.yaml", tmp_path / "node.yaml")
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, config="node.yaml",
                            extra={"image": {"distro": "coreos"}, "etcd": {"client_port": 4001, "peer_port": 7001}})

    run = deploy_three(cli, cluster, signed_ova, vcsim)
    assert run.returncode == 2
    assert "coreos.etcd is etcd 0.4" in run.stderr
    assert f"vmcoreos convert {tmp_path}/node.yaml --to flatcar -o {tmp_path}/node-flatcar.yaml" in run.stderr
    assert "set etcd.client_port" not in run.stderr  # no advice that would not help
    assert not [n for n, v in inventory(vcsim).items() if v["extra"].get("vmcoreos.cluster") == "lab"]


def test_converted_seed_on_4001_7001_joins_with_discovery(cli, vcsim, guestsim, signed_ova, subnet, tmp_path,
                                                          discovery_etcd):
    _convert(cli, CONFIGS / "seed-coreos.yaml", tmp_path / "node.yaml")
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, config="node.yaml",
                            extra={"etcd": {"client_port": 4001, "peer_port": 7001, "bootstrap": "discovery"}})
    run = deploy_three(cli, cluster, signed_ova, vcsim, "--discovery-etcd", discovery_etcd)
    assert run.returncode == 0, run.stderr
    assert_three_joined(subnet, port=4001, peer_port=7001)
    assert_guests_ok(guestsim, "cloud-config")
    assert guestsim.node("lab-01")["etcd"]["env"]["ETCD_DISCOVERY"].startswith(discovery_etcd)


def test_ignition_config_joins_with_afterburn_kargs(cli, vcsim, guestsim, signed_ova, subnet, tmp_path):
    shutil.copy(CONFIGS / "flatcar-ignition.json", tmp_path / "node.json")
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, config="node.json")

    run = deploy_three(cli, cluster, signed_ova, vcsim)
    assert run.returncode == 0, run.stderr
    assert_three_joined(subnet)
    assert_guests_ok(guestsim, "ignition")
    node = guestsim.node("lab-02")
    assert node["data_key"] == "guestinfo.ignition.config.data" and node["ip_source"] == "afterburn-kargs"
    # Joined: the config (and its secrets) is gone from guestinfo, as Ignition >= 2.14 leaves it; the digest
    # mark stays, and every node records the etcd cluster it joined.
    cluster_id = format(int(requests.post(f"http://{subnet}.11:2379/v3/cluster/member/list", json={},
                                          timeout=5).json()["header"]["cluster_id"]), "x")
    vms = inventory(vcsim)
    for name in ("lab-01", "lab-02", "lab-03"):
        extra = vms[name]["extra"]
        assert extra["guestinfo.ignition.config.data"] == "e30K"
        assert extra["guestinfo.ignition.config.data.encoding"] == "base64"
        assert extra["vmcoreos.config_digest"] and extra["vmcoreos.etcd_cluster_id"] == cluster_id
    again = deploy_three(cli, cluster, signed_ova, vcsim)
    assert again.returncode == 0, again.stderr
    assert [n["action"] for n in json.loads(again.stdout)["nodes"]] == ["unchanged"] * 3
    assert "clearing" not in again.stderr


def test_hyphenated_keys_are_refused_before_any_vm_exists(cli, vcsim, guestsim, signed_ova, subnet, tmp_path):
    (tmp_path / "node.yaml").write_text(
        "#cloud-config\n"
        "coreos:\n"
        "  etcd2:\n"
        "    advertise-client-urls: http://$private_ipv4:2379\n"
        "  units:\n"
        "    - name: etcd2.service\n"
        "      command: start\n"
    )
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, config="node.yaml", extra={"image": {"distro": "coreos"}})

    run = deploy_three(cli, cluster, signed_ova, vcsim)
    assert run.returncode == 2, run.stderr
    assert "node.yaml has 1 problem" in run.stderr
    assert "line 4: error: unrecognized key 'advertise-client-urls' in coreos.etcd2: write 'advertise_client_urls'" in run.stderr
    # --json: the same failure as an error object on stdout, findings included.
    error = json.loads(run.stdout)["error"]
    assert error["exit_code"] == 2 and "node.yaml has 1 problem" in error["message"]
    assert any("advertise-client-urls" in f for f in error["findings"])
    assert not [n for n, v in inventory(vcsim).items() if v["extra"].get("vmcoreos.cluster") == "lab"]


def test_private_ipv4_under_dhcp_is_refused_before_any_vm_exists(cli, vcsim, guestsim, signed_ova, subnet, tmp_path,
                                                                 discovery_etcd):
    # Under DHCP coreos-cloudinit leaves $private_ipv4 empty on a real guest: a config that relies on it
    # would advertise http://:2379, so it is refused, and the token is not minted either.
    (tmp_path / "node.yaml").write_text(
        "#cloud-config\n"
        "coreos:\n"
        "  units:\n"
        "    - name: etcd-member.service\n"
        "      command: start\n"
        "      drop_ins:\n"
        "        - name: 20-urls.conf\n"
        "          content: |\n"
        "            [Service]\n"
        "            Environment=ETCD_ADVERTISE_CLIENT_URLS=http://$private_ipv4:2379\n"
    )
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, config="node.yaml",
                            extra={"node": {"network": {"mode": "dhcp"}}, "etcd": {"bootstrap": "discovery"}})

    run = deploy_three(cli, cluster, signed_ova, vcsim, "--discovery-etcd", discovery_etcd)
    assert run.returncode == 2
    assert "line 10: error: $private_ipv4 stays empty under DHCP on VMware" in run.stderr
    assert not [n for n, v in inventory(vcsim).items() if v["extra"].get("vmcoreos.cluster") == "lab"]
    assert requests.get(discovery_etcd + "/v2/keys/_etcd/registry", timeout=5).status_code == 404


def _assert_dhcp_joined(guestsim, subnet):
    """Three healthy members on leased addresses, each advertising the address its guest actually got."""
    ips = {n: guestsim.node(n)["ip"] for n in ("lab-01", "lab-02", "lab-03")}
    assert all(ip.startswith(f"{subnet}.1") and guestsim.node(n)["ip_source"] == "dhcp" for n, ip in ips.items())
    members = member_list(f"http://{ips['lab-01']}:2379")
    assert sorted(members) == ["lab-01", "lab-02", "lab-03"]
    for name, ip in ips.items():
        assert members[name]["clientURLs"] == [f"http://{ip}:2379"]
        assert requests.get(f"http://{ip}:2379/health", timeout=5).json()["health"] == "true"
        assert guestsim.node(name)["boot_count"] == 2  # first boot without etcd, second with its membership
    return ips


def test_dhcp_static_bootstrap_joins_after_a_second_boot(cli, vcsim, guestsim, signed_ova, subnet, tmp_path):
    shutil.copy(CONFIGS / "flatcar-etcd-member.yaml", tmp_path / "node.yaml")
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, config="node.yaml",
                            extra={"node": {"network": {"mode": "dhcp"}}})
    run = deploy_three(cli, cluster, signed_ova, vcsim)
    assert run.returncode == 0, run.stderr
    assert "writing its membership and booting it again" in run.stderr
    _assert_dhcp_joined(guestsim, subnet)
    # A second run changes nothing (the digest mark does not depend on the lease).
    again = deploy_three(cli, cluster, signed_ova, vcsim)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["created"] == []


def test_dhcp_discovery_bootstrap_joins(cli, vcsim, guestsim, signed_ova, subnet, tmp_path, discovery_etcd):
    shutil.copy(CONFIGS / "flatcar-etcd-member.yaml", tmp_path / "node.yaml")
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, config="node.yaml",
                            extra={"node": {"network": {"mode": "dhcp"}}, "etcd": {"bootstrap": "discovery"}})
    run = deploy_three(cli, cluster, signed_ova, vcsim, "--discovery-etcd", discovery_etcd)
    assert run.returncode == 0, run.stderr
    _assert_dhcp_joined(guestsim, subnet)
    assert guestsim.node("lab-02")["etcd"]["env"]["ETCD_DISCOVERY"].startswith(discovery_etcd)
