"""Each planned node names the guestinfo key its config travels in; the digest leaves out only that key's value."""

from pathlib import Path

import pytest

from vmcoreos.guest import compose, guestinfo, nodeconfig
from vmcoreos.clusterfile import parse_cluster

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _nodes(tmp_path, config, distro, mode="static"):
    (tmp_path / config).write_text((CONFIGS / config).read_text())
    net = {"mode": "static", "addresses": ["10.0.0.21-10.0.0.23/24"]} if mode == "static" else {"mode": "dhcp"}
    settings = parse_cluster({"cluster": "lab", "count": 2, "image": {"distro": distro},
                              "node": {"config": config, "network": net}}, base_dir=tmp_path)
    return compose.node_configs(settings, nodeconfig.load_user_config(settings), count=2)


@pytest.mark.parametrize("config,distro,mode,key", [
    ("flatcar-etcd-member.yaml", "flatcar", "static", guestinfo.CLOUDINIT_DATA),
    ("flatcar-etcd-member.yaml", "flatcar", "dhcp", guestinfo.CLOUDINIT_DATA),  # the first boot's config
    ("flatcar-ignition.json", "flatcar", "static", guestinfo.IGNITION_DATA),
    ("coreos-etcd2.yaml", "coreos", "static", guestinfo.CLOUDINIT_DATA),
])
def test_the_data_key_is_the_one_key_holding_the_config(tmp_path, config, distro, mode, key):
    for node in _nodes(tmp_path, config, distro, mode):
        assert node.data_key == key
        assert [k for k in node.guestinfo if k in guestinfo.DATA_KEYS] == [key]
        assert node.guestinfo[guestinfo.encoding_key(key)] == "gzip+base64"


def test_the_digest_covers_every_key_but_the_encoded_config(tmp_path, mocker):
    node = _nodes(tmp_path, "flatcar-etcd-member.yaml", "flatcar")[0]
    from vmcoreos.guest import compose

    same = dict(node.guestinfo, **{node.data_key: "re-encoded", guestinfo.encoding_key(node.data_key): "base64"})
    assert compose._digest(node.config_text, same) == node.digest
    moved = dict(node.guestinfo, **{guestinfo.HOSTNAME: "lab-09"})
    assert compose._digest(node.config_text, moved) != node.digest


def test_an_applied_ignition_config_is_cleared_from_either_data_key_but_a_cloud_config_stays():
    # CoreOS CL's Ignition v0.x reads guestinfo.coreos.config.data: its password hashes must not stay there.
    from vmcoreos.guest import guestinfo
    from vmcoreos.guest.encoding import encode

    ignition = b'{"ignition": {"version": "2.2.0"}, "passwd": {"users": [{"name": "core", "passwordHash": "$6$x"}]}}'
    coreos = guestinfo.config_keys(guestinfo.CLOUDINIT_DATA, ignition, "gzip+base64")
    assert guestinfo.clear_applied_ignition(coreos) == {
        guestinfo.CLOUDINIT_DATA: "e30K", guestinfo.CLOUDINIT_DATA + ".encoding": "base64"}
    flatcar = guestinfo.config_keys(guestinfo.IGNITION_DATA, ignition, "base64")
    assert guestinfo.clear_applied_ignition(flatcar)[guestinfo.IGNITION_DATA] == "e30K"
    cloud = guestinfo.config_keys(guestinfo.CLOUDINIT_DATA, b"#cloud-config\nhostname: a\n", "base64")
    assert guestinfo.clear_applied_ignition(cloud) == {}  # coreos-cloudinit reads it on every boot
    assert guestinfo.clear_applied_ignition({guestinfo.CLOUDINIT_DATA: "e30K"}) == {}  # already cleared
    assert guestinfo.clear_applied_ignition({guestinfo.CLOUDINIT_DATA: encode(b"{}", "base64") + "!",
                                             guestinfo.CLOUDINIT_DATA + ".encoding": "base64"}) == {}
