"""The node's own address among what VMware Tools reports (guest.ipAddress, guest.net)."""

from __future__ import annotations

from tests.harness.guestsim import DOCKER0, flannel_address, link_local, tools_reports
from vmcoreos.vsphere import guestnet

MAC = "00:50:56:aa:bb:01"


def test_each_report_of_a_booting_node_gives_its_own_address_or_none():
    link, overlay, settled = tools_reports("10.0.0.11", MAC, "VM Network", 1.0, 3.0)
    # fe80:: alone while the network comes up: no address yet, keep waiting.
    assert link.ip == link_local(MAC)
    assert guestnet.node_address(link.net, link.ip) is None
    # flannel's address is the primary, docker0 is listed: the first NIC's IPv4 is still the node's.
    assert overlay.ip == flannel_address("10.0.0.11")
    assert guestnet.node_address(overlay.net, overlay.ip) == "10.0.0.11"
    assert guestnet.node_address(settled.net, settled.ip) == "10.0.0.11"
    assert guestnet.reported(overlay.net, overlay.ip) == {"10.0.0.11", DOCKER0, flannel_address("10.0.0.11")}


def _nic(device_id, *addresses):
    return {"deviceConfigId": device_id, "ipAddress": list(addresses)}


def test_link_local_ipv4_and_addresses_other_nics_also_hold_are_not_the_nodes():
    assert guestnet.node_address([_nic(4000, "169.254.3.4", "fe80::1")]) is None
    # The same address on a guest-made interface too (a bridge over the NIC): not proof it is the NIC's own.
    assert guestnet.node_address([_nic(4000, "10.0.0.5", "10.0.0.6"), _nic(-1, "10.0.0.5")]) == "10.0.0.6"


def test_the_first_nic_is_4000_else_the_lowest_vsphere_gave():
    assert guestnet.node_address([_nic(4001, "10.0.1.1"), _nic(4000, "10.0.0.1")]) == "10.0.0.1"
    assert guestnet.node_address([_nic(-1, "172.17.0.1"), _nic(4002, "10.0.2.1"), _nic(4001, "10.0.1.1")]) == "10.0.1.1"


def test_what_the_guest_reports_counts_only_as_an_ip_literal():
    assert guestnet.node_address([_nic(4000, "10.0.0.1; rm -rf /", "not-an-ip", "10.0.0.7")]) == "10.0.0.7"
    assert guestnet.node_address(None, "10.0.0.8") == "10.0.0.8"  # tools without guest.net
    assert guestnet.node_address(None, "fe80::1") is None
    assert guestnet.node_address(None, "bogus") is None
