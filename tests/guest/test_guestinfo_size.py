"""The guestinfo size limit holds on every path a config takes to the guest, with open-vm-tools' RPC overhead left.

A value of exactly 65,536 bytes already fails in open-vm-tools (its 64 KiB message carries the RPC command too).
"""

from __future__ import annotations

import base64
import os

import pytest

from vmcoreos.errors import ConfigError
from vmcoreos.guest import compose, guestinfo, nodeconfig
from vmcoreos.guest.configvalues import NodeConfig
from vmcoreos.clusterfile import parse_cluster

H = "#cloud-config\n"


def _big(tmp_path, mode: str):
    blob = base64.b64encode(os.urandom(60000)).decode()
    (tmp_path / "cc.yaml").write_text(H + f"write_files:\n  - path: /etc/blob\n    encoding: base64\n    content: {blob}\n")
    network = {"mode": "dhcp"} if mode == "dhcp" else {"mode": "static", "addresses": ["10.0.0.21-10.0.0.23/24"]}
    settings = parse_cluster({"cluster": "lab", "count": 3, "node": {"config": "cc.yaml", "network": network}},
                             base_dir=tmp_path)
    return settings, nodeconfig.load_user_config(settings)


@pytest.mark.parametrize("leases", [None, {"lab-01": "10.0.0.5", "lab-02": "10.0.0.6", "lab-03": "10.0.0.7"}],
                         ids=["dhcp-first-boot", "leased-re-plan"])
def test_dhcp_configs_are_checked_too(tmp_path, leases):
    settings, user = _big(tmp_path, "dhcp")
    with pytest.raises(ConfigError) as err:
        compose.node_configs(settings, user, count=3, leases=leases)
    assert len(err.value.findings) == 3
    assert all("the encoded config is" in f and "guestinfo limit" in f for f in err.value.findings)


def _node(size: int) -> NodeConfig:
    return NodeConfig("lab-01", 1, None, "", {guestinfo.CLOUDINIT_DATA: "x" * size}, "d", "cloud-config")


def test_a_value_of_exactly_64_kib_is_refused_and_the_margin_is_kept():
    assert compose._size_findings(_node(65536))
    assert compose._size_findings(_node(guestinfo.MAX_VALUE_BYTES + 1))
    assert not compose._size_findings(_node(guestinfo.MAX_VALUE_BYTES))
    assert guestinfo.RPC_LIMIT_BYTES - guestinfo.MAX_VALUE_BYTES >= 1024
