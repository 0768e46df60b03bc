"""The guest simulator's NICs: a network config applies to every NIC it matches, as networkd and dracut do."""

from __future__ import annotations

from tests.harness.guestboots import b64, ignition
from tests.harness import guestsim as gs

FIRST, SECOND = gs.Nic("ens192", "00:50:56:01:02:03"), gs.Nic("ens224", "00:50:56:0a:0b:0c")
CLOUD = b64("#cloud-config\nhostname: n1\n")


def _boot(extra):
    return gs.simulate_boot(extra, FIRST, lease=lambda: "127.0.200.10", more_nics=[SECOND],
                            lease_for=lambda nic: "127.0.200.11")


def _cloud(match: dict[str, str]) -> dict[str, str]:
    keys = {f"guestinfo.interface.0.{k}": v for k, v in match.items()}
    keys.update({"guestinfo.interface.0.ip.0.address": "127.0.1.11/8", "guestinfo.interface.0.role": "private",
                 "guestinfo.coreos.config.data": CLOUD, "guestinfo.coreos.config.data.encoding": "base64"})
    return keys


def test_a_name_glob_gives_both_nics_the_same_address_which_is_an_error():
    result = _boot(_cloud({"name": "e*"}))
    assert [(link.name, link.ip) for link in result.links] == [("ens192", "127.0.1.11"), ("ens224", "127.0.1.11")]
    assert any("is on both ens192 and ens224" in e for e in result.errors)


def test_a_mac_match_gives_the_address_to_that_nic_alone():
    result = _boot(_cloud({"mac": SECOND.mac.upper()}))
    assert [(link.name, link.ip) for link in result.links] == [("ens192", "127.0.200.10"), ("ens224", "127.0.1.11")]
    assert result.errors == [] and result.ip == "127.0.200.10"  # the first NIC, left to DHCP


def test_kargs_name_the_nic_by_ifname_mac():
    kargs = f"ifname=node0:{SECOND.mac} ip=127.0.1.51::127.0.0.1:255.0.0.0:n1:node0:off"
    result = _boot({"guestinfo.ignition.config.data": b64(ignition()),
                    "guestinfo.ignition.config.data.encoding": "base64",
                    "guestinfo.afterburn.initrd.network-kargs": kargs})
    assert [(link.name, link.ip) for link in result.links] == [("ens192", "127.0.200.10"), ("ens224", "127.0.1.51")]
    bad = gs.parse_network_kargs
    assert bad(f"ifname=node0:{FIRST.mac} ip=127.0.1.51::::n1:node0:off").mac == FIRST.mac


def test_tools_report_every_nic_by_device_id():
    reports = gs.tools_reports("127.0.1.11", FIRST.mac, "VM Network", 0.0, 0.0, [(SECOND.mac, "127.0.200.11")])
    net = reports[-1].net
    assert [(n["deviceConfigId"], n["ipAddress"][0]) for n in net[:2]] == [(4000, "127.0.1.11"), (4001, "127.0.200.11")]
