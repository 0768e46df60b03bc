"""The guest simulator runs Ignition once per VM, as the real initramfs does (first boot only)."""

from __future__ import annotations

import json

from tests.harness.guestboots import b64, ignition, KARGS, NIC
from tests.harness import guestsim as gs


def _extra(config: str, kargs: str | None = KARGS) -> dict[str, str]:
    extra = {"guestinfo.ignition.config.data": b64(config), "guestinfo.ignition.config.data.encoding": "base64"}
    if kargs:
        extra["guestinfo.afterburn.initrd.network-kargs"] = kargs
    return extra


def _boot(extra, provisioned=None):
    return gs.simulate_boot(extra, NIC, lease=lambda: "127.0.200.10", provisioned=provisioned)


def test_a_later_boot_keeps_what_the_first_applied_and_reads_no_guestinfo():
    first = _boot(_extra(ignition()))
    kept = gs.provisioned_by_ignition(first)
    assert kept == {"config": ignition(), "ip": "127.0.1.51"}
    # Rewritten guestinfo (a second-boot design's new membership, or Ignition's own e30K) changes nothing.
    other = json.loads(ignition(hostname_source="data:,renamed%0A"))
    again = _boot(_extra(json.dumps(other), kargs="ip=127.0.9.9::127.0.0.1:255.0.0.0:x:ens192:off"), provisioned=kept)
    assert again.hostname == "ign-node" and again.ip == "127.0.1.51" and again.ip_source == "static"
    assert again.etcd.env == first.etcd.env and again.errors == []
    cleared = _boot({"guestinfo.ignition.config.data": "e30K", "guestinfo.ignition.config.data.encoding": "base64"},
                    provisioned=kept)
    assert cleared.etcd is not None and cleared.datasource.startswith("disk")


def test_a_dhcp_node_keeps_its_lease_source_on_later_boots():
    first = _boot(_extra(ignition(), kargs=None))
    assert first.ip_source == "dhcp"
    again = _boot({}, provisioned=gs.provisioned_by_ignition(first))
    assert (again.ip, again.ip_source) == ("127.0.200.10", "dhcp")


def test_a_failed_ignition_leaves_nothing_to_boot_from():
    failed = _boot(_extra('{"ignition": {"version": "9.9.9"}}'))
    assert failed.errors and gs.provisioned_by_ignition(failed) is None


def test_coreos_cloudinit_skips_a_nameless_user_and_its_groups():
    # The seed's users (coreos-facts §10): toor gets no groups, and nothing fails.
    cc = gs.parse_cloud_config("#cloud-config\nusers:\n  - name: toor\n  - groups: [sudo, docker]\n")
    assert cc.users == [{"name": "toor", "groups": []}]
    assert "User object has no 'name' field, skipping" in cc.warnings
