"""What vmcoreos writes, read back by the guest simulator's pure model of coreos-cloudinit and Ignition.

tests/harness/guestsim.py is written from the upstream sources and imports
nothing from vmcoreos, so agreeing with it means agreeing with the guest.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from dataclasses import replace

import pytest

from tests.harness import guestsim
from vmcoreos.guest import compose, encoding, nodeconfig
from vmcoreos.clusterfile import parse_cluster

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DATA = "#cloud-config\nhostname: lab-01\nwrite_files:\n  - path: /etc/motd\n    content: \"héllo\"\n".encode()


@pytest.mark.parametrize("name", encoding.ENCODINGS)
def test_every_encoding_we_write_decodes_in_the_guest(name):
    value = encoding.encode(DATA, name)
    assert guestsim.decode_content(value, name) == DATA


# Raw gzip as the guest's decoder receives it: bytes, which Go keeps and Python holds as surrogates.
RAW_GZIP = gzip.compress(DATA, mtime=0).decode("utf-8", "surrogateescape")


@pytest.mark.parametrize("alias", encoding.DECODERS)
def test_our_decoder_agrees_with_the_guest_on_every_name(alias):
    written = {"": DATA.decode(), "gz": RAW_GZIP, "gzip": RAW_GZIP}.get(alias, encoding.encode(
        DATA, "gzip+base64" if "+" in alias else "base64"))
    assert encoding.decode(written, alias) == guestsim.decode_content(written, alias) == DATA


@pytest.mark.parametrize("alias", ["gz", "gzip"])
def test_raw_gzip_is_read_but_never_written(alias):
    # gzip's magic 1f 8b is not UTF-8, so no guestinfo string (XML text) can carry it:
    # vmcoreos reads that encoding, as the guests do, but refuses to write it.
    with pytest.raises(UnicodeDecodeError):
        gzip.compress(DATA).decode("utf-8")
    with pytest.raises(ValueError, match="unsupported encoding"):
        encoding.encode(DATA, alias)


def _settings(tmp_path, config: str, *, distro="flatcar", etcd=None, name="node.yaml"):
    (tmp_path / name).write_text((CONFIGS / config).read_text())
    data = {"cluster": "lab", "count": 3, "image": {"distro": distro},
            "node": {"config": name, "network": {"mode": "static", "addresses": ["10.0.0.21-10.0.0.23/24"],
                                                 "gateway": "10.0.0.1", "dns": ["10.0.0.53"]}},
            "etcd": etcd or {}}
    return parse_cluster(data, base_dir=tmp_path)


def _boot(settings, index=1):
    nodes = compose.node_configs(settings, nodeconfig.load_user_config(settings), count=3)
    node = nodes[index]
    result = guestsim.simulate_boot(node.guestinfo, guestsim.Nic("ens192", node.mac),
                                    lease=lambda: pytest.fail("a static node asked for a DHCP lease"))
    assert result.errors == []
    assert result.user_data == node.config_text
    assert (result.hostname, result.ip) == (node.name, node.ip)
    return node, result


def test_flatcar_member_dropin_as_the_guest_reads_it(tmp_path):
    _, result = _boot(_settings(tmp_path, "flatcar-etcd-member.yaml"))
    assert (result.config_kind, result.data_key) == ("cloud-config", "guestinfo.coreos.config.data")
    assert result.network["private_ipv4"] == "10.0.0.22" and result.network["dns_servers"] == ["10.0.0.53"]
    env = result.etcd.env
    assert result.etcd.unit == "etcd-member.service"
    assert env["ETCD_NAME"] == "lab-02" and env["ETCD_HEARTBEAT_INTERVAL"] == "100"
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://10.0.0.22:2379"
    assert env["ETCD_INITIAL_CLUSTER"] == (
        "lab-01=http://10.0.0.21:2380,lab-02=http://10.0.0.22:2380,lab-03=http://10.0.0.23:2380")


def test_coreos_etcd2_with_private_ipv4_substituted(tmp_path):
    _, result = _boot(_settings(tmp_path, "coreos-etcd2.yaml", distro="coreos"))
    assert result.substitutions["$private_ipv4"] == "10.0.0.22"
    assert result.etcd.unit == "etcd2.service"
    assert result.etcd.env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://10.0.0.22:2379"
    assert result.etcd.env["ETCD_INITIAL_CLUSTER_TOKEN"] == "vmcoreos-lab"


def test_converted_legacy_seed_on_its_own_ports(tmp_path):
    from vmcoreos.guest import convert

    (tmp_path / "seed-flatcar.yaml").write_text(convert.to_flatcar((CONFIGS / "seed-coreos.yaml").read_text()).text)
    settings = _settings(tmp_path, "flatcar-etcd-member.yaml", etcd={"client_port": 4001, "peer_port": 7001})
    settings = settings.with_overrides(node=replace(settings.node, config=tmp_path / "seed-flatcar.yaml"))
    _, result = _boot(settings)
    env = result.etcd.env
    assert (result.etcd.unit, result.etcd.kind) == ("etcd-member.service", "etcd-member")
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://10.0.0.22:4001"
    assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == "http://10.0.0.22:7001"
    assert env["ETCD_LISTEN_CLIENT_URLS"] == "http://0.0.0.0:4001"
    assert env["ETCD_INITIAL_CLUSTER"].startswith("lab-01=http://10.0.0.21:7001,")
    assert env["ETCD_ENABLE_V2"] == "true"


def test_flatcar_ignition_with_afterburn_kargs(tmp_path):
    node, result = _boot(_settings(tmp_path, "flatcar-ignition.json", name="node.json"))
    assert (result.config_kind, result.data_key) == ("ignition", "guestinfo.ignition.config.data")
    assert result.ip_source == "afterburn-kargs"
    assert node.guestinfo["guestinfo.afterburn.initrd.network-kargs"] == (
        f"ifname=vmcoreos0:{node.mac} ip=10.0.0.22::10.0.0.1:255.255.255.0:lab-02:vmcoreos0:off nameserver=10.0.0.53")
    assert "guestinfo.hostname" not in node.guestinfo  # Ignition does not read it
    assert result.files["/etc/hostname"] == b"lab-02\n"
    network = result.files["/etc/systemd/network/00-vmcoreos.network"].decode()
    assert "Address=10.0.0.22/24" in network and "Gateway=10.0.0.1" in network and "DNS=10.0.0.53" in network
    assert f"[Match]\nMACAddress={node.mac}\n" in network and "Name=" not in network
    env = result.etcd.env
    assert env["ETCD_NAME"] == "lab-02" and env["ETCD_ELECTION_TIMEOUT"] == "1000"
    assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == "http://10.0.0.22:2380"


def test_ignition_spec_2_for_coreos_uses_coreos_keys_and_networkd(tmp_path):
    (tmp_path / "n.json").write_text(json.dumps({"ignition": {"version": "2.2.0"}}))
    data = {"cluster": "lab", "count": 3, "image": {"distro": "coreos"},
            "node": {"config": "n.json", "network": {"mode": "static", "addresses": ["10.0.0.21-10.0.0.23/24"]}}}
    settings = parse_cluster(data, base_dir=tmp_path)
    node = compose.node_configs(settings, nodeconfig.load_user_config(settings), count=3)[0]
    doc = json.loads(node.config_text)
    assert set(node.guestinfo) == {"guestinfo.coreos.config.data", "guestinfo.coreos.config.data.encoding"}
    assert doc["networkd"]["units"][0]["name"] == "00-vmcoreos.network"
    assert doc["storage"]["files"][0] == {"filesystem": "root", "path": "/etc/hostname", "mode": 420,
                                          "contents": {"source": "data:,lab-01%0A"}}
    unit = doc["systemd"]["units"][0]
    assert unit["name"] == "etcd-member.service" and unit["enabled"] is True
    text = guestsim.decode_content(node.guestinfo["guestinfo.coreos.config.data"], "gzip+base64").decode()
    assert guestsim.parse_ignition(text).hostname == "lab-01"


@pytest.mark.parametrize("config, name", [("flatcar-etcd-member.yaml", "node.yaml"), ("flatcar-ignition.json", "node.json")])
def test_the_static_address_goes_only_to_the_nic_with_the_nodes_mac(tmp_path, config, name):
    settings = _settings(tmp_path, config, name=name)
    node = compose.node_configs(settings, nodeconfig.load_user_config(settings), count=3)[0]
    assert node.mac.startswith("00:50:56:") and int(node.mac.split(":")[3], 16) <= 0x3F  # VMware's manual range
    other = guestsim.simulate_boot(node.guestinfo, guestsim.Nic("ens192", "00:50:56:3f:ff:ff"), lease=lambda: "10.9.9.9")
    assert (other.ip, other.ip_source) == ("10.9.9.9", "dhcp")  # a NIC of another MAC is left to DHCP
    mine = guestsim.simulate_boot(node.guestinfo, guestsim.Nic("ens224", node.mac.upper()),
                                  lease=lambda: pytest.fail("leased"))
    assert mine.ip == "10.0.0.21"  # whatever name its PCI slot gave it


def test_cloud_config_nodes_get_interface_mac_and_no_name_glob(tmp_path):
    settings = _settings(tmp_path, "flatcar-etcd-member.yaml")
    nodes = compose.node_configs(settings, nodeconfig.load_user_config(settings), count=3)
    assert len({n.mac for n in nodes}) == 3
    keys = nodes[2].guestinfo
    assert keys["guestinfo.interface.0.mac"] == nodes[2].mac and "guestinfo.interface.0.name" not in keys
