"""Tests for the guest simulator (tests/harness/guestsim.py).

Most tests exercise its pure model of a Flatcar guest: decoding, network
metadata, substitution, cloud-config and Ignition handling, etcd derivation.
Run for real against vcsim and a real etcd, it is tested in tests/e2e/test_guestsim_boot.py.
"""

from __future__ import annotations

import base64
import gzip
import json
import time

import psutil
import pytest

from tests.harness.guestboots import b64, boot_with, ETCD2_BODY, ETCD2_CONFIG, gz_b64, ignition, ignition_boot, KARGS, wait_for
from tests.harness import guestsim as gs



def static_net(ip: str = "127.0.1.11", role: str = "private") -> dict[str, str]:
    return {"guestinfo.interface.0.name": "ens192", "guestinfo.interface.0.role": role,
            "guestinfo.interface.0.ip.0.address": f"{ip}/8"}


def boot(data: str, encoding: str, extra: dict[str, str] | None = None) -> gs.BootResult:
    """Boot with guestinfo.coreos.config.data already encoded as given."""
    return boot_with({**(extra or {}), "guestinfo.coreos.config.data": data,
                      "guestinfo.coreos.config.data.encoding": encoding})


def cloud_config_boot(body: str, net: dict[str, str] | None = None,
                      extra: dict[str, str] | None = None) -> gs.BootResult:
    """Boot a cloud-config (header added, base64) on a static private address by default."""
    keys = {**(static_net() if net is None else net), **(extra or {})}
    return boot(b64("#cloud-config\n" + body), "base64", keys)


# ---------------------------------------------------------------------------
# Decoding (§3.3)
# ---------------------------------------------------------------------------

PAYLOAD = "#cloud-config\nhostname: h\n"


def encode_as(encoding: str, text: str) -> str:
    kind = gs.ENCODINGS[encoding]
    if kind == "raw":
        return text
    if kind == "base64":
        return b64(text)
    if kind == "gzip":
        # Raw gzip bytes in a guestinfo string, as pyvmomi would hand them over.
        return gzip.compress(text.encode()).decode("utf-8", "surrogateescape")
    return gz_b64(text)


@pytest.mark.parametrize("encoding", ["", "b64", "base64", "gz", "gzip", "gz+base64",
                                      "gzip+base64", "gz+b64", "gzip+b64"])
def test_every_documented_encoding_alias_decodes(encoding):
    assert gs.decode_content(encode_as(encoding, PAYLOAD), encoding) == PAYLOAD.encode()


@pytest.mark.parametrize("encoding", ["x", "BASE64", "gzip+base64 ", "base64+gzip", "yaml"])
def test_unknown_encodings_fail_like_coreos_cloudinit(encoding):
    with pytest.raises(gs.DecodeError) as err:
        gs.decode_content(b64(PAYLOAD), encoding)
    assert str(err.value) == f'Unsupported encoding "{encoding}"'


@pytest.mark.parametrize("data", [
    b64(PAYLOAD).rstrip("="),  # unpadded
    "not base64!",
    base64.urlsafe_b64encode(b"\xfb\xff\xfe").decode(),  # URL-safe alphabet
])
def test_base64_is_strict_std_encoding(data):
    with pytest.raises(gs.DecodeError, match="Unable to decode base64"):
        gs.decode_content(data, "base64")


def test_base64_ignores_line_breaks_like_go():
    wrapped = "\n".join(b64(PAYLOAD * 10)[i:i + 76] for i in range(0, 400, 76))
    assert gs.decode_content(wrapped, "base64") == (PAYLOAD * 10).encode()


def test_gzip_of_non_gzip_data_fails():
    with pytest.raises(gs.DecodeError, match="gzip"):
        gs.decode_content(b64(PAYLOAD), "gzip+base64")


def test_truncated_gzip_body_yields_a_prefix_in_decode_content_but_fails_top_level():
    text = "".join(f"line {i}\n" for i in range(5000))
    truncated = gzip.compress(text.encode())[:-200]
    decoded = gs.decode_content(b64(truncated), "gz+b64")
    assert decoded and text.encode().startswith(decoded) and len(decoded) < len(text)
    with pytest.raises(gs.DecodeError, match="Failed decompressing"):
        gs.decompress_if_gzip(truncated)


def test_gzip_magic_is_decompressed_transparently():
    data = gzip.compress(PAYLOAD.encode())
    assert gs.decompress_if_gzip(data) == PAYLOAD.encode()
    assert gs.decompress_if_gzip(PAYLOAD.encode()) == PAYLOAD.encode()
    # base64 of a gzip stream without saying so still works (main() gunzips it).
    result = boot_with({"guestinfo.coreos.config.data": b64(data),
                        "guestinfo.coreos.config.data.encoding": "base64"})
    assert result.config_kind == "cloud-config" and result.user_data == PAYLOAD


def test_ignition_key_wins_and_takes_its_own_encoding_key():
    read = {"ignition.config.data": PAYLOAD, "coreos.config.data": b64("#!/bin/sh\n"),
            "coreos.config.data.encoding": "base64"}.get
    raw = gs.fetch_user_data(lambda k: read(k, ""))
    assert raw.key == "guestinfo.ignition.config.data" and raw.encoding == ""
    assert raw.data == PAYLOAD.encode()


def test_coreos_key_is_the_fallback():
    values = {"coreos.config.data": b64(PAYLOAD), "coreos.config.data.encoding": "b64"}
    raw = gs.fetch_user_data(lambda k: values.get(k, ""))
    assert (raw.key, raw.encoding, raw.data) == ("guestinfo.coreos.config.data", "b64", PAYLOAD.encode())


def test_undecodable_user_data_still_boots_but_applies_nothing():
    result = boot(b64("#cloud-config\nhostname: x\n"), "x", {"guestinfo.hostname": "meta"})
    assert any('Unsupported encoding "x"' in e for e in result.errors)
    assert result.user_data is None and result.config_kind == "undecodable"
    assert result.hostname == "meta" and result.ip == "127.0.200.10" and result.etcd is None


def test_extra_config_last_value_wins_and_empty_reads_as_unset():
    values = gs.extra_config_dict([("a", "1"), ("b", "x"), ("a", "2"), ("b", "")])
    assert values == {"a": "2", "b": ""}
    assert gs.Guestinfo(values).direct("b") == ""


# ---------------------------------------------------------------------------
# OVF environment (§3.1)
# ---------------------------------------------------------------------------

OVFENV = """<?xml version="1.0" encoding="UTF-8"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"
             xmlns:oe="http://schemas.dmtf.org/ovf/environment/1">
  <PlatformSection><Kind>VMware ESXi</Kind></PlatformSection>
  <PropertySection>{props}</PropertySection>
</Environment>"""


def prop(key: str, value: str) -> str:
    return f'<Property oe:key="{key}" oe:value="{value}"/>'


def test_ovfenv_hides_plain_guestinfo_from_coreos_cloudinit():
    extra = {**static_net(), "guestinfo.ovfenv": OVFENV.format(props=""),
             "guestinfo.coreos.config.data": b64(ETCD2_CONFIG),
             "guestinfo.coreos.config.data.encoding": "base64"}
    result = boot_with(extra)
    assert result.datasource == "ovfenv"
    assert result.config_kind == "none" and result.etcd is None
    assert result.ip == "127.0.200.10"  # the static interface keys were not seen either


def test_ovfenv_properties_are_read():
    props = prop("guestinfo.hostname", "fromovf") + prop(
        "guestinfo.coreos.config.data", b64("#cloud-config\n")) + prop(
        "guestinfo.coreos.config.data.encoding", "base64")
    result = boot_with({"guestinfo.ovfenv": OVFENV.format(props=props),
                        "guestinfo.coreos.config.data": "ignored"})
    assert result.hostname == "fromovf" and result.config_kind == "cloud-config"


def test_malformed_ovfenv_is_fatal_for_coreos_cloudinit():
    result = boot_with({"guestinfo.ovfenv": "<Environment", "guestinfo.coreos.config.data": "x"})
    assert result.errors and "ovfenv" in result.errors[0] and result.etcd is None


# ---------------------------------------------------------------------------
# Network metadata (§3.2)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("keys, message", [
    ({"guestinfo.interface.0.ip.0.address": "127.0.1.11"}, "invalid CIDR address: 127.0.1.11"),
    ({"guestinfo.interface.0.ip.0.address": "127.0.1.11/255.0.0.0"}, "invalid CIDR address"),
    ({"guestinfo.interface.0.ip.0.address": "127.0.1.11/8",
      "guestinfo.interface.0.role": "internal"}, 'unrecognized role: "internal"'),
    ({"guestinfo.interface.0.dhcp": "true"}, 'invalid DHCP option: "true"'),
    ({"guestinfo.interface.0.ip.0.address": "127.0.1.11/8",
      "guestinfo.interface.0.route.0.gateway": "127.0.0.1"}, "missing destination key"),
    ({"guestinfo.interface.0.ip.0.address": "127.0.1.11/8",
      "guestinfo.interface.0.route.0.destination": "0.0.0.0/0"}, "missing gateway key"),
    ({"guestinfo.interface.0.ip.0.address": "127.0.1.11/8",
      "guestinfo.interface.0.route.0.gateway": "127.0.0.1",
      "guestinfo.interface.0.route.0.destination": "0.0.0.0"}, "invalid CIDR address: 0.0.0.0"),
    ({"guestinfo.interface.0.ip.0.address": "127.0.1.11/8",
      "guestinfo.interface.0.route.0.gateway": "gw",
      "guestinfo.interface.0.route.0.destination": "0.0.0.0/0"}, 'invalid gateway: "gw"'),
    ({"guestinfo.interface.0.dhcp": "yes", "guestinfo.interface.0.mac": "00:50:56"},
     "error while parsing MAC address"),
    ({"guestinfo.dns.server.0": "dns.example"}, 'invalid nameserver: "dns.example"'),
])
def test_bad_network_keys_make_the_metadata_fetch_fail(keys, message):
    result = boot_with({**keys, "guestinfo.hostname": "h",
                        "guestinfo.coreos.config.data": b64(ETCD2_CONFIG),
                        "guestinfo.coreos.config.data.encoding": "base64"})
    assert len(result.errors) == 1 and message in result.errors[0]
    # coreos-cloudinit exited 1: DHCP, no hostname, no user-data applied.
    assert result.ip == "127.0.200.10" and result.ip_source == "dhcp"
    assert result.hostname == "localhost" and not result.applied and result.etcd is None
    assert result.user_data == ETCD2_CONFIG  # still recorded for the test's benefit


def test_role_is_only_checked_for_interfaces_with_addresses():
    values = {"interface.0.role": "bogus", "interface.0.dhcp": "yes"}
    md = gs.fetch_metadata(lambda key: values.get(key, ""))
    assert md.netconf == {"interface.0.dhcp": "yes"}


def test_indexes_must_be_contiguous_from_zero():
    extra = {"guestinfo.interface.1.name": "ens192", "guestinfo.interface.1.role": "private",
             "guestinfo.interface.1.ip.0.address": "127.0.1.12/8",
             "guestinfo.interface.0.ip.1.address": "127.0.1.13/8",
             "guestinfo.dns.server.1": "1.1.1.1"}
    result = boot_with(extra)
    assert result.ip == "127.0.200.10" and result.network["interfaces"] == []
    assert result.network["dns_servers"] == [] and result.substitutions["$private_ipv4"] == ""


def test_first_static_address_is_the_node_ip():
    extra = {**static_net("127.0.1.21"), "guestinfo.interface.0.ip.1.address": "127.0.1.22/8",
             "guestinfo.interface.0.route.0.gateway": "127.0.0.1",
             "guestinfo.interface.0.route.0.destination": "0.0.0.0/0",
             "guestinfo.dns.server.0": "127.0.0.53", "guestinfo.interface.0.dhcp": "no"}
    result = boot_with(extra)
    assert (result.ip, result.ip_source) == ("127.0.1.21", "static")
    assert result.network["dns_servers"] == ["127.0.0.53"]


def test_dhcp_interface_gets_a_lease():
    result = boot_with({"guestinfo.interface.0.name": "ens192", "guestinfo.interface.0.dhcp": "yes"})
    assert (result.ip, result.ip_source) == ("127.0.200.10", "dhcp")


@pytest.mark.parametrize("name, mac, matches", [
    ("ens192", "", True), ("ens*", "", True), ("eth0", "", False), ("eth0 ens192", "", True),
    ("", "00:50:56:AA:BB:CC", True), ("", "00-50-56-aa-bb-cc", True),
    ("ens192", "00:50:56:00:00:01", False),
])
def test_interface_must_match_the_nic_to_apply(name, mac, matches):
    extra = {"guestinfo.interface.0.ip.0.address": "127.0.1.31/8"}
    if name:
        extra["guestinfo.interface.0.name"] = name
    if mac:
        extra["guestinfo.interface.0.mac"] = mac
    result = boot_with(extra)
    assert (result.ip == "127.0.1.31") is matches
    assert any("falls back to DHCP" in w for w in result.warnings) is not matches


@pytest.mark.parametrize("text, ok", [("10.0.0.1/24", True), ("10.0.0.1", False), ("10.0.0.1/33", False),
                                      ("10.0.0.1/255.255.255.0", False), ("fd00::1/64", True),
                                      ("10.0.0.01/24", False), ("10.0.0.1/+8", False)])
def test_parse_cidr_follows_go(text, ok):
    if ok:
        gs.parse_cidr(text)
    else:
        with pytest.raises(ValueError):
            gs.parse_cidr(text)


# ---------------------------------------------------------------------------
# $private_ipv4 / $public_ipv4 (§3.4)
# ---------------------------------------------------------------------------

SUBST_CONFIG = r"""hostname: h
write_files:
  - path: /etc/ips
    content: |
      $private_ipv4|$public_ipv4|\$private_ipv4
"""


def written(result: gs.BootResult, path: str = "/etc/ips") -> str:
    return result.files[path].decode().rstrip("\n")


def test_role_addresses_feed_the_substitutions():
    net = {**static_net("127.0.1.41", "private"),
           "guestinfo.interface.1.name": "ens224", "guestinfo.interface.1.role": "public",
           "guestinfo.interface.1.ip.0.address": "127.0.9.9/8"}
    result = cloud_config_boot(SUBST_CONFIG, net)
    assert written(result) == "127.0.1.41|127.0.9.9|$private_ipv4"


def test_last_matching_address_wins():
    net = {**static_net("127.0.1.41", "private"), "guestinfo.interface.0.ip.1.address": "127.0.1.42/8"}
    assert written(cloud_config_boot(SUBST_CONFIG, net)).startswith("127.0.1.42|")


def test_without_a_role_or_with_dhcp_the_substitution_is_empty():
    assert written(cloud_config_boot(SUBST_CONFIG, static_net(role=""))) == "||$private_ipv4"
    dhcp = {"guestinfo.interface.0.dhcp": "yes", "guestinfo.interface.0.role": "private"}
    assert written(cloud_config_boot(SUBST_CONFIG, dhcp)) == "||$private_ipv4"


def test_substitution_regex_quirks_match_go():
    subs = {"$private_ipv4": "10.0.0.1"}
    assert gs.apply_substitutions("$private_ipv4", subs) == "10.0.0.1"
    assert gs.apply_substitutions("a\\$private_ipv4", subs) == "a$private_ipv4"
    # Go's ([^\\]|^) consumes the preceding character: back-to-back keys only
    # get the first one replaced.
    assert gs.apply_substitutions("$private_ipv4$private_ipv4", subs) == "10.0.0.1$private_ipv4"


def test_substitution_happens_before_yaml_parsing():
    body = "hostname: $private_ipv4\n"
    assert cloud_config_boot(body).hostname == "127"  # cut at the first '.'


# ---------------------------------------------------------------------------
# Type detection (§3.6) and the cloud-config schema (§3.7)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, kind", [
    ("#cloud-config\n", "cloud-config"), ("#cloud-config  \r\nhostname: a\n", "cloud-config"),
    ("#cloud-config", "cloud-config"), ("# cloud-config\n", "unknown"), ("#cloud-configs\n", "unknown"),
    ("#!/bin/bash\necho\n", "script"), ('{"ignition": {"version": "3.3.0"}}', "ignition"),
    ('{"ignitionVersion": 1}', "ignition"), ('{"Ignition": {"Version": "2.3.0"}}', "ignition"),
    ('{"ignition": {"version": 3}}', "unknown"), ('{"ignitionVersion": "1"}', "unknown"),
    ("hostname: a\n", "unknown"), ("", "none"),
    ("Content-Type: multipart/mixed; boundary=x\nMIME-Version: 1.0\n\n--x--\n", "multipart"),
])
def test_user_data_type_detection(text, kind):
    assert gs.detect_kind(text) == kind


def test_unrecognized_user_data_applies_nothing():
    result = boot(b64("hostname: nope\ncoreos: {}\n"), "base64", {**static_net(), "guestinfo.hostname": "meta"})
    assert result.errors == ["Unrecognized user-data format"]
    assert result.hostname == "meta" and result.ip == "127.0.1.11" and not result.applied


def test_hostname_from_user_data_wins_and_is_truncated():
    assert cloud_config_boot("hostname: node1.example.com\n").hostname == "node1"
    assert cloud_config_boot("hostname: " + "a" * 70 + "\n").hostname == "a" * 63
    assert cloud_config_boot("").hostname == "localhost"
    meta = cloud_config_boot("coreos: {}\n", extra={"guestinfo.hostname": "meta.example"})
    assert meta.hostname == "meta"


def test_hyphenated_keys_are_silently_ignored():
    body = ETCD2_BODY.replace("initial_cluster:", "initial-cluster:")
    result = cloud_config_boot(body)
    assert "ETCD_INITIAL_CLUSTER" not in result.etcd.env
    assert "ETCD_INITIAL_CLUSTER_STATE" in result.etcd.env
    assert any("initial-cluster" in w for w in result.warnings)


def test_hyphenated_drop_ins_key_loses_the_drop_ins():
    body = ("coreos:\n  units:\n    - name: etcd-member.service\n      command: start\n"
            "      drop-ins:\n        - name: 20-x.conf\n          content: |\n"
            "            [Service]\n            Environment=ETCD_INITIAL_CLUSTER=a=http://x:2380\n")
    result = cloud_config_boot(body)
    assert "ETCD_INITIAL_CLUSTER" not in result.etcd.env


@pytest.mark.parametrize("body, message", [
    ("hostname: a\nhostname: b\n", 'mapping key "hostname" already defined'),
    ("coreos:\n  etcd2:\n    name: {a: 1}\n", "cannot unmarshal !!map into string"),
    ("coreos:\n  etcd2:\n    debug: maybe\n", "into bool"),
    ("coreos:\n  units: start\n", "cannot unmarshal !!str into []"),
    ("- a\n- b\n", "into struct"),
    ("write_files:\n  - path: /x\n    encoding: base64\n    content: '!!'\n", "Unable to decode base64"),
])
def test_cloud_config_errors_fail_the_whole_config(body, message):
    result = cloud_config_boot(body, extra={"guestinfo.hostname": "meta"})
    assert len(result.errors) == 1 and message in result.errors[0]
    assert result.hostname == "meta" and not result.applied and result.etcd is None


def test_yaml_scalars_keep_their_source_text_like_yaml_v3():
    cc = gs.parse_cloud_config("#cloud-config\nhostname: 010\ncoreos:\n  etcd2:\n"
                               "    name: 1e3\n    debug: yes\n    heartbeat_interval: 0x10\n")
    assert cc.hostname == "010" and cc.etcd2["name"] == "1e3"
    assert cc.etcd2["debug"] is True and cc.etcd2["heartbeat_interval"] == 16


# ---------------------------------------------------------------------------
# etcd (§3.7, §6)
# ---------------------------------------------------------------------------



def test_etcd2_fields_become_etcd_env_vars():
    result = cloud_config_boot(ETCD2_BODY)
    assert result.etcd.kind == "etcd2" and result.etcd.unit == "etcd2.service"
    env = result.etcd.env
    assert env["ETCD_NAME"] == "node1"
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://127.0.1.11:2379"
    assert env["ETCD_INITIAL_CLUSTER"] == "node1=http://127.0.1.11:2380"
    assert env["ETCD_STRICT_RECONFIG_CHECK"] == "true"
    assert env["ETCD_HEARTBEAT_INTERVAL"] == "200"
    assert "ETCD_DEBUG" not in env  # false is Go's zero value: not written
    assert "ETCD_ELECTION_TIMEOUT" not in env  # hyphenated
    assert env["ETCD_ENABLE_V2"] == "true"  # etcd2 served the v2 API


def test_service_contents_matches_coreos_cloudinit():
    text = gs.service_contents({"name": "n", "debug": True, "heartbeat_interval": 0,
                                "snapshot_count": 5}, gs.ETCD2_FIELDS)
    assert text == ('[Service]\nEnvironment="ETCD_DEBUG=true"\nEnvironment="ETCD_NAME=n"\n'
                    'Environment="ETCD_SNAPSHOT_COUNT=5"\n')
    assert gs.service_contents({}, gs.ETCD2_FIELDS) == ""
    assert "ETCD_SNAPSHOTCOUNT=5" in gs.service_contents({"snapshot_count": 5}, gs.ETCD_FIELDS)


@pytest.mark.parametrize("units, started", [
    ("", False),
    ("  units:\n    - name: etcd2.service\n      command: restart\n", True),
    ("  units:\n    - name: etcd2.service\n      command: reload-or-restart\n", True),
    ("  units:\n    - name: etcd2.service\n      command: try-restart\n", False),
    ("  units:\n    - name: etcd2.service\n      enable: true\n", False),
    ("  units:\n    - name: etcd2.service\n      command: start\n    - name: etcd2.service\n"
     "      command: stop\n", False),
])
def test_etcd2_runs_only_when_its_unit_is_started(units, started):
    body = ETCD2_BODY.split("  units:")[0] + units
    assert (cloud_config_boot(body).etcd is not None) is started


def test_enabled_unit_starts_from_the_next_boot():
    body = ETCD2_BODY.split("  units:")[0] + "  units:\n    - name: etcd2.service\n      enable: true\n"
    first = cloud_config_boot(body)
    assert first.etcd is None and first.enabled_units == {"etcd2.service"}
    assert any("next boot" in w for w in first.warnings)
    extra = {**static_net(), "guestinfo.coreos.config.data": b64("#cloud-config\n" + body),
             "guestinfo.coreos.config.data.encoding": "base64"}
    assert boot_with(extra, enabled_before=first.enabled_units).etcd is not None


def test_masked_or_invalid_command_fails_and_stops_processing():
    masked = ETCD2_BODY + "      mask: true\n"
    result = cloud_config_boot(masked)
    assert result.etcd is None and "is masked" in result.errors[0]
    bad = ETCD2_BODY.replace("command: start", "command: enable")
    result = cloud_config_boot(bad)
    assert result.etcd is None and '"enable"' in result.errors[0]


MEMBER_BODY = r"""hostname: node2
coreos:
  units:
    - name: etcd-member.service
      command: start
      drop_ins:
        - name: 30-later.conf
          content: |
            [Service]
            Environment=ETCD_INITIAL_CLUSTER_STATE=existing
        - name: 20-cluster.conf
          content: |
            [Service]
            Environment="ETCD_NAME=%H"
            Environment=ETCD_ADVERTISE_CLIENT_URLS=http://$private_ipv4:2379 "ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379"
            Environment="ETCD_INITIAL_CLUSTER_STATE=new"
            Environment=ETCD_INITIAL_CLUSTER=node2=http://$private_ipv4:2380,\
            node3=http://127.0.1.13:2380
            [Install]
            Environment=ETCD_IGNORED=1
"""


def test_etcd_member_drop_in_environment_passes_through():
    result = cloud_config_boot(MEMBER_BODY)
    assert result.etcd.kind == "etcd-member"
    env = result.etcd.env
    assert env["ETCD_NAME"] == "node2"  # %H
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://127.0.1.11:2379"
    assert env["ETCD_LISTEN_CLIENT_URLS"] == "http://0.0.0.0:2379"
    # systemd turns "\\<newline>" into a space, so a wrapped list splits in two.
    assert env["ETCD_INITIAL_CLUSTER"] == "node2=http://127.0.1.11:2380,"
    assert env["node3"] == "http://127.0.1.13:2380"
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "existing"  # 30-later.conf sorts last
    assert "ETCD_IGNORED" not in env and "ETCD_ENABLE_V2" not in env


def test_etcd_member_name_defaults_to_the_hostname():
    body = ("hostname: node4\ncoreos:\n  units:\n    - name: etcd-member.service\n"
            "      command: start\n")
    assert cloud_config_boot(body).etcd.env == {"ETCD_NAME": "node4"}


def test_empty_environment_resets_and_environment_files_win():
    body = """write_files:
  - path: /etc/etcd.env
    content: |
      # written by the tool
      ETCD_NAME="from-file"
coreos:
  units:
    - name: etcd-member.service
      command: start
      drop_ins:
        - name: 10-a.conf
          content: "[Service]\\nEnvironment=ETCD_A=1\\n"
        - name: 20-b.conf
          content: "[Service]\\nEnvironment=\\nEnvironment=ETCD_NAME=x ETCD_B=2\\nEnvironmentFile=/etc/etcd.env\\n"
"""
    env = cloud_config_boot(body).etcd.env
    assert env == {"ETCD_NAME": "from-file", "ETCD_B": "2"}


def test_missing_environment_file_keeps_etcd_from_starting():
    body = ("coreos:\n  units:\n    - name: etcd-member.service\n      command: start\n"
            "      drop_ins:\n        - name: 10-a.conf\n"
            "          content: \"[Service]\\nEnvironmentFile=/etc/nope.env\\nEnvironmentFile=-/etc/opt.env\\n\"\n")
    result = cloud_config_boot(body)
    assert result.etcd is None and "Failed to load environment files" in result.errors[0]


def test_etcd_member_opts_become_env():
    env = gs.etcd_opts_to_env({"ETCD_NAME": "a", "ETCD_OPTS": "--name=b --enable-v2 --listen-client-urls http://0.0.0.0:2379"})
    assert env == {"ETCD_NAME": "b", "ETCD_ENABLE_V2": "true",
                   "ETCD_LISTEN_CLIENT_URLS": "http://0.0.0.0:2379"}


LEGACY_BODY = """coreos:
  etcd:
    name: old1
    addr: $private_ipv4:4001
    peer_addr: $private_ipv4:7001
    discovery: https://discovery.etcd.io/abc
    snapshot: true
    initial_cluster_state: new
    peer_heartbeat_interval: 50
  units:
    - name: etcd.service
      command: start
"""


def test_legacy_etcd_runs_etcd3_on_addr_and_peer_addr():
    result = cloud_config_boot(LEGACY_BODY)
    assert result.etcd.kind == "etcd"
    assert result.etcd.env == {
        "ETCD_NAME": "old1",
        "ETCD_ENABLE_V2": "true",
        "ETCD_ADVERTISE_CLIENT_URLS": "http://127.0.1.11:4001",
        "ETCD_LISTEN_CLIENT_URLS": "http://127.0.1.11:4001",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": "http://127.0.1.11:7001",
        "ETCD_LISTEN_PEER_URLS": "http://127.0.1.11:7001",
        "ETCD_DISCOVERY": "https://discovery.etcd.io/abc",
        "ETCD_HEARTBEAT_INTERVAL": "50",
    }
    assert "etcd 0.4 ignores ETCD_INITIAL_CLUSTER_STATE (etcd2 options no longer work for etcd)" in result.warnings


def test_legacy_bind_addr_and_etcd2_keys_ignored_as_etcd04_does():
    warnings: list[str] = []
    env = gs.etcd04_to_etcd3({"ETCD_NAME": "n1", "ETCD_ADDR": "10.0.0.1:4001", "ETCD_BIND_ADDR": "0.0.0.0",
                              "ETCD_LISTEN_PEER_URLS": "http://10.0.0.1:2380",
                              "ETCD_INITIAL_CLUSTER": "n1=http://10.0.0.1:7001,n2=http://10.0.0.2:7001"}, warnings)
    assert env["ETCD_LISTEN_CLIENT_URLS"] == "http://0.0.0.0:4001"
    assert env["ETCD_LISTEN_PEER_URLS"] == "http://127.0.0.1:7001"
    # Without discovery or peers, etcd 0.4 starts a cluster of itself alone, whatever initial_cluster said.
    assert env["ETCD_INITIAL_CLUSTER"] == "n1=http://127.0.0.1:7001"
    assert warnings == ["etcd 0.4 ignores ETCD_LISTEN_PEER_URLS (etcd2 options no longer work for etcd)",
                        "etcd 0.4 ignores ETCD_INITIAL_CLUSTER (etcd2 options no longer work for etcd)"]


def test_legacy_peers_join_is_not_pretended():
    result = cloud_config_boot(LEGACY_BODY.replace("    snapshot: true\n", "    peers: 127.0.1.12:7001\n"))
    assert result.etcd is None
    assert result.errors == ["etcd 0.4 joins through peers are not modelled by guestsim: etcd.service not started"]


# ---------------------------------------------------------------------------
# Running etcd on this machine: the 0.0.0.0 rewrite
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("urls, expected", [
    ("http://0.0.0.0:2379", "http://127.0.1.11:2379"),
    ("http://[::]:2379", "http://127.0.1.11:2379"),
    ("http://127.0.1.11:2379", "http://127.0.1.11:2379"),
    ("http://localhost:2379,http://0.0.0.0:4001", "http://127.254.1.11:2379,http://127.0.1.11:4001"),
    ("https://127.0.0.1:2379", "https://127.254.1.11:2379"),
])
def test_listen_urls_are_moved_to_the_nodes_own_addresses(urls, expected):
    assert gs.rewrite_listen_urls(urls, "127.0.1.11") == expected


def test_listening_on_another_nodes_ip_fails():
    with pytest.raises(gs.GuestError, match="not an address of this node"):
        gs.rewrite_listen_urls("http://127.0.1.12:2379", "127.0.1.11")


def test_localize_env_pins_data_and_defaults(tmp_path):
    env = gs.localize_etcd_env({"ETCD_NAME": "n", "ETCD_DATA_DIR": "/var/lib/etcd",
                                "ETCD_CERT_FILE": "/etc/ssl/etcd/cert.pem"}, "127.0.1.11", tmp_path)
    assert env["ETCD_DATA_DIR"] == str(tmp_path / "etcd")
    assert env["ETCD_LISTEN_CLIENT_URLS"] == "http://127.254.1.11:2379"
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://localhost:2379"
    assert env["ETCD_LISTEN_PEER_URLS"] == "http://127.254.1.11:2380"
    assert env["ETCD_CERT_FILE"] == str(tmp_path / "root/etc/ssl/etcd/cert.pem")


# ---------------------------------------------------------------------------
# Ignition (minimal model) and Afterburn network kargs
# ---------------------------------------------------------------------------


def test_ignition_hostname_etcd_member_and_kargs_address():
    result = ignition_boot(ignition())
    assert result.config_kind == "ignition" and result.datasource == "ignition"
    assert result.hostname == "ign-node" and result.errors == []
    assert (result.ip, result.ip_source) == ("127.0.1.51", "afterburn-kargs")
    assert result.etcd.kind == "etcd-member"
    assert result.etcd.env == {"ETCD_NAME": "ign-node",
                               "ETCD_INITIAL_CLUSTER": "ign-node=http://127.0.1.51:2380"}


def test_ignition_base64_data_url_and_spec2_enable():
    config = json.loads(ignition(version="2.3.0", enabled=None,
                                 hostname_source="data:text/plain;base64," + b64("b64-node")))
    config["systemd"]["units"][0]["enable"] = True
    result = ignition_boot(json.dumps(config))
    assert result.hostname == "b64-node" and result.etcd is not None


def test_ignition_unit_must_be_enabled():
    result = ignition_boot(ignition(enabled=False))
    assert result.etcd is None and any("not enabled" in w for w in result.warnings)


def test_ignition_without_kargs_or_for_another_nic_uses_dhcp():
    assert ignition_boot(ignition(), kargs="").ip == "127.0.200.10"
    other = KARGS.replace("ens192", "eth0")
    assert ignition_boot(ignition(), kargs=other).ip == "127.0.200.10"
    no_host = ignition_boot(ignition(hostname_source="data:,"))
    assert no_host.hostname == "kargs-host"


@pytest.mark.parametrize("version", ["1.0.0", "2.5.0", "3.7.0", "4.0.0", "3.3"])
def test_unsupported_ignition_versions_fail(version):
    result = ignition_boot(ignition(version=version))
    assert result.etcd is None and "unsupported config version" in result.errors[0]


@pytest.mark.parametrize("config, message", [
    ('{"ignition": {"version": "3.3.0"}, "storage": []}', "storage must be an object"),
    ('{"ignition": {"version": "3.3.0"}, "systemd": {"units": [{"name": 1}]}}', "name must be a string"),
    ('{"ignition": {"version": "3.3.0"}, "storage": {"files": [{"path": "/x", '
     '"contents": {"source": "data:,a", "compression": "gzip"}}]}}', "gzip"),
])
def test_wrongly_shaped_ignition_configs_fail(config, message):
    result = ignition_boot(config)
    assert result.etcd is None and result.errors[0].startswith("Ignition failed") and message in result.errors[0]


def test_parse_network_kargs_forms():
    assert gs.parse_network_kargs("ip=dhcp") is None
    assert gs.parse_network_kargs("rd.foo ip=ens192:dhcp") is None
    net = gs.parse_network_kargs(KARGS)
    assert (net.ip, net.gateway, net.netmask, net.hostname, net.interface) == (
        "127.0.1.51", "127.0.0.1", "255.0.0.0", "kargs-host", "ens192")


# ---------------------------------------------------------------------------
# Small machinery
# ---------------------------------------------------------------------------


def test_lease_pool_is_stable_per_vm_and_skips_addresses_in_use(tmp_path):
    pool = gs.LeasePool("127.0.200.10-127.0.200.12", tmp_path / "leases.json")
    assert pool.lease("a", in_use=["127.0.200.10"]) == "127.0.200.11"
    assert pool.lease("b") == "127.0.200.10"
    assert pool.lease("a") == "127.0.200.11"
    pool.release("b")
    reloaded = gs.LeasePool("127.0.200.10-127.0.200.12", tmp_path / "leases.json")
    assert reloaded.lease("a") == "127.0.200.11" and reloaded.lease("c") == "127.0.200.10"


def test_serial_worker_runs_in_order_and_reports_newer_events():
    worker = gs.SerialWorker("test")
    seen = []
    worker.submit(lambda: seen.append(worker.superseded(5)))
    worker.submit(lambda: seen.append("second"))
    worker.close()
    worker.join(5)
    assert seen == [True, "second"]


# ---------------------------------------------------------------------------
# Helpers (the integration with vcsim and a real etcd is tests/e2e/test_guestsim_boot.py)
# ---------------------------------------------------------------------------


def test_shutdown_kills_etcd_members_without_waiting_for_a_graceful_stop(tmp_path):
    # A last etcd member whose peers are gone took about 7 s to act on SIGTERM, at the end of every test
    # with a cluster; this stand-in ignores SIGTERM altogether (ignored signals stay ignored across exec).
    stubborn = tmp_path / "etcd"
    ready = tmp_path / "ready"
    stubborn.write_text(f"#!/bin/sh\ntrap '' TERM\ntouch {ready}\nexec sleep 60\n")
    stubborn.chmod(0o755)
    sim = gs.GuestSimulator(None, tmp_path / "state", "127.0.200.10-127.0.200.20")
    etcd = gs.EtcdSupervisor(str(stubborn), {}, tmp_path / "etcd.log", "stubborn")
    etcd.start()
    wait_for(ready.exists, 5, "the stand-in ignoring SIGTERM")
    sim._etcds.add(etcd)
    member = psutil.Process(etcd.pid)
    started = time.monotonic()
    sim.shutdown()
    took = time.monotonic() - started
    assert not member.is_running() or member.status() == psutil.STATUS_ZOMBIE
    assert took < 2, f"shutdown took {took:.1f}s"
