from pathlib import Path

import pytest
import yaml

from vmcoreos.errors import ConfigError
from vmcoreos.guest import cloudconfig, compose, nodeconfig
from vmcoreos.guest.encoding import decode
from vmcoreos.clusterfile import parse_cluster

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _settings(tmp_path, config_text=None, distro="flatcar", **net):
    data = {"cluster": "lab", "count": 3, "image": {"distro": distro},
            "node": {"network": {"mode": "static", "addresses": ["10.0.0.21-10.0.0.23/24"], "gateway": "10.0.0.1",
                                 "dns": ["10.0.0.1", "1.1.1.1"], **net}}}
    if config_text is not None:
        (tmp_path / "cc.yaml").write_text(config_text)
        data["node"]["config"] = "cc.yaml"
    return parse_cluster(data, base_dir=tmp_path)


def _plan(settings, **kw):
    return compose.node_configs(settings, nodeconfig.load_user_config(settings), count=kw.pop("count", 3), **kw)


def test_etcd2_fields_merged_and_user_keys_kept(tmp_path):
    settings = _settings(tmp_path, (CONFIGS / "coreos-etcd2.yaml").read_text(), distro="coreos")
    nodes = _plan(settings)
    doc = yaml.safe_load(nodes[1].config_text)
    etcd2 = doc["coreos"]["etcd2"]
    assert etcd2["name"] == "lab-02"
    assert etcd2["initial_cluster"] == (
        "lab-01=http://10.0.0.21:2380,lab-02=http://10.0.0.22:2380,lab-03=http://10.0.0.23:2380"
    )
    assert etcd2["initial_cluster_state"] == "new"
    assert etcd2["initial_cluster_token"] == "vmcoreos-lab"
    # The user's own URL fields stay as written, $private_ipv4 and all.
    assert etcd2["advertise_client_urls"] == "http://$private_ipv4:2379"
    assert doc["coreos"]["fleet"] == {"public_ip": "$private_ipv4"}
    assert doc["users"][0]["groups"] == ["sudo", "docker"]
    assert doc["hostname"] == "lab-02"
    assert nodes[1].config_text.startswith("#cloud-config\n")


def test_no_hyphenated_keys_are_emitted(tmp_path):
    settings = _settings(tmp_path, (CONFIGS / "flatcar-etcd-member.yaml").read_text())

    def keys(node):
        if isinstance(node, dict):
            for k, v in node.items():
                yield k
                yield from keys(v)
        elif isinstance(node, list):
            for v in node:
                yield from keys(v)

    for n in _plan(settings):
        assert not [k for k in keys(yaml.safe_load(n.config_text)) if "-" in k]


def test_member_dropin_keeps_user_dropins_and_adds_membership_last(tmp_path):
    settings = _settings(tmp_path, (CONFIGS / "flatcar-etcd-member.yaml").read_text())
    doc = yaml.safe_load(_plan(settings)[0].config_text)
    unit = next(u for u in doc["coreos"]["units"] if u["name"] == "etcd-member.service")
    assert [d["name"] for d in unit["drop_ins"]] == ["20-tuning.conf", cloudconfig.MEMBER_DROPIN]
    env = cloudconfig.dropin_env(unit["drop_ins"][-1]["content"])
    assert env["ETCD_NAME"] == "lab-01"
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://10.0.0.21:2379"
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "new"


def test_guestinfo_network_keys_follow_coreos_cloudinit(tmp_path):
    keys = _plan(_settings(tmp_path))[2].guestinfo
    assert keys["guestinfo.hostname"] == "lab-03"
    assert keys["guestinfo.interface.0.role"] == "private"  # so $private_ipv4 resolves
    assert keys["guestinfo.interface.0.dhcp"] == "no"
    assert keys["guestinfo.interface.0.ip.0.address"] == "10.0.0.23/24"
    assert keys["guestinfo.interface.0.route.0.gateway"] == "10.0.0.1"
    assert keys["guestinfo.interface.0.route.0.destination"] == "0.0.0.0/0"
    assert keys["guestinfo.dns.server.0"] == "10.0.0.1" and keys["guestinfo.dns.server.1"] == "1.1.1.1"
    assert keys["guestinfo.coreos.config.data.encoding"] == "gzip+base64"


def test_encoded_config_decodes_to_the_rendered_text(tmp_path):
    node = _plan(_settings(tmp_path))[0]
    keys = node.guestinfo
    data = decode(keys["guestinfo.coreos.config.data"], keys["guestinfo.coreos.config.data.encoding"])
    assert data.decode() == node.config_text


def test_digest_is_stable_and_changes_with_the_config(tmp_path):
    a = _plan(_settings(tmp_path))
    b = _plan(_settings(tmp_path))
    assert [n.digest for n in a] == [n.digest for n in b]
    c = _plan(_settings(tmp_path, "#cloud-config\nssh_authorized_keys: [x]\n"))
    assert a[0].digest != c[0].digest


def test_fewer_addresses_than_nodes_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="3 nodes need 3 addresses but node.network.addresses has 1"):
        _plan(_settings(tmp_path, addresses=["10.0.0.21/24"]))


def test_joining_node_gets_existing_state_and_live_members(tmp_path):
    settings = _settings(tmp_path, addresses=["10.0.0.21-10.0.0.24/24"])
    live = {"lab-01": "http://10.0.0.21:2380", "lab-02": "http://10.0.0.22:2380", "lab-03": "http://10.0.0.23:2380"}
    node = _plan(settings, count=4, only=["lab-04"], existing_members=live)[0]
    doc = yaml.safe_load(node.config_text)
    unit = next(u for u in doc["coreos"]["units"] if u["name"] == "etcd-member.service")
    env = cloudconfig.dropin_env(unit["drop_ins"][-1]["content"])
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
    assert env["ETCD_INITIAL_CLUSTER"].endswith(",lab-04=http://10.0.0.24:2380")


def test_missing_cloud_config_header_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="has 1 problem") as err:
        _plan(_settings(tmp_path, "coreos: {}\n"))
    assert err.value.findings == ['line 1: error: the first line must be exactly "#cloud-config"']


def test_dhcp_first_boot_has_no_etcd_and_no_network_keys(tmp_path):
    settings = _settings(tmp_path, (CONFIGS / "flatcar-etcd-member.yaml").read_text(), mode="dhcp", addresses=[])
    first = _plan(settings)
    doc = yaml.safe_load(first[0].config_text)
    unit = next(u for u in doc["coreos"]["units"] if u["name"] == "etcd-member.service")
    assert "command" not in unit  # etcd waits for the second boot, when the address is known
    assert not [k for k in first[0].guestinfo if k.startswith("guestinfo.interface.")]
    assert first[0].address is None and doc["hostname"] == "lab-01"


def test_dhcp_second_boot_uses_the_leased_addresses(tmp_path):
    settings = _settings(tmp_path, (CONFIGS / "flatcar-etcd-member.yaml").read_text(), mode="dhcp", addresses=[])
    leases = {"lab-01": "10.9.0.5", "lab-02": "10.9.0.6", "lab-03": "10.9.0.7"}
    final = _plan(settings, leases=leases)
    doc = yaml.safe_load(final[1].config_text)
    unit = next(u for u in doc["coreos"]["units"] if u["name"] == "etcd-member.service")
    env = cloudconfig.dropin_env(unit["drop_ins"][-1]["content"])
    assert unit["command"] == "start"
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://10.9.0.6:2379"
    assert env["ETCD_INITIAL_CLUSTER"].startswith("lab-01=http://10.9.0.5:2380,")
    assert not [k for k in final[1].guestinfo if k.startswith("guestinfo.interface.")]


def test_dhcp_with_ignition_needs_a_discovery_bootstrap(tmp_path):
    ign = (CONFIGS / "flatcar-ignition.json").read_text()
    with pytest.raises(ConfigError) as err:
        _plan(_settings(tmp_path, ign, mode="dhcp", addresses=[]))
    assert any("Ignition reads its config once" in f and "etcd.bootstrap: discovery" in f for f in err.value.findings)
