"""Each validation rule with a failing example and the finding it gives (line numbers included)."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import pytest

from tests.guest.validation import cluster_with, problems_of, warnings_of
from vmcoreos.errors import ConfigError
from vmcoreos.guest import compose, nodeconfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
H = "#cloud-config\n"


# -- syntax and shape ---------------------------------------------------------------


def test_yaml_error_has_its_line_and_no_snippet(tmp_path):
    text = H + "users:\n  - name: ops\n    passwd: \"$6$secrethash\n"
    found = problems_of(tmp_path, text)
    assert len(found) == 1 and found[0].startswith("line 5: error: YAML: found unexpected end of stream")
    assert "secrethash" not in found[0]


def test_missing_header_is_reported_with_the_other_problems(tmp_path):
    found = problems_of(tmp_path, "coreos:\n  etcd_2: {}\n")
    assert found == ['line 1: error: the first line must be exactly "#cloud-config"',
                     "line 2: error: unrecognized key 'etcd_2' in coreos; the guest would ignore it"]


def test_config_must_be_a_mapping(tmp_path):
    assert problems_of(tmp_path, H + "- a\n- b\n") == ["line 2: error: a cloud-config must be a YAML mapping"]


def test_script_is_refused(tmp_path):
    settings = cluster_with(tmp_path, "#!/bin/sh\necho hi\n")
    with pytest.raises(ConfigError, match=r"is a script \(#!\)"):
        nodeconfig.load_user_config(settings)


# -- coreos-cloudinit's -validate rules ------------------------------------------------------


def test_unknown_keys_are_errors_at_every_level(tmp_path):
    text = H + "hostnme: x\ncoreos:\n  units:\n    - name: a.service\n      comand: start\n"
    assert problems_of(tmp_path, text) == [
        "line 2: error: unrecognized key 'hostnme'; the guest would ignore it",
        "line 6: error: unrecognized key 'comand' in coreos.units[0]; the guest would ignore it",
    ]


def test_hyphenated_keys_are_errors_naming_the_underscore_form(tmp_path):
    text = H + "coreos:\n  units:\n    - name: etcd-member.service\n      drop-ins: []\nssh-authorized-keys: []\n"
    assert problems_of(tmp_path, text) == [
        "line 5: error: unrecognized key 'drop-ins' in coreos.units[0]: write 'drop_ins'; Flatcar's coreos-cloudinit"
        " silently ignores keys with '-'",
        "line 6: error: unrecognized key 'ssh-authorized-keys': write 'ssh_authorized_keys'; Flatcar's"
        " coreos-cloudinit silently ignores keys with '-'",
    ]


def test_write_files_under_coreos(tmp_path):
    found = problems_of(tmp_path, H + "coreos:\n  write_files: []\n")
    assert found == ["line 3: error: write_files doesn't belong under coreos; move it to the top level"]


def test_duplicate_keys(tmp_path):
    found = problems_of(tmp_path, H + "hostname: a\nmanage_etc_hosts: localhost\nmanage_etc_hosts: localhost\n")
    assert "line 4: error: duplicate key 'manage_etc_hosts' (first at line 3); the guest refuses the whole file" in found


@pytest.mark.parametrize("snippet, finding", [
    ("users:\n  - name: ops\n    groups: sudo\n", "line 4: error: incorrect type for 'users[0].groups' (want a list of strings)"),
    ("coreos:\n  update: [off]\n", "line 3: error: incorrect type for 'coreos.update' (want a mapping)"),
    ("coreos:\n  locksmith:\n    group: {a: b}\n", "line 4: error: incorrect type for 'coreos.locksmith.group' (want a string)"),
    ("users:\n  - name: ops\n    system: maybe\n", "line 4: error: incorrect type for 'users[0].system' (want true or false)"),
])
def test_wrong_types(tmp_path, snippet, finding):
    assert finding in problems_of(tmp_path, H + snippet)


def test_wrong_type_never_shows_a_secret(tmp_path):
    found = problems_of(tmp_path, H + "users:\n  - name: ops\n    passwd: [\"$6$secrethash\"]\n")
    assert found == ["line 4: error: incorrect type for 'users[0].passwd' (want a string)"]


@pytest.mark.parametrize("snippet, finding", [
    ("coreos:\n  units:\n    - name: a.service\n      command: begin\n",
     "line 5: error: invalid value 'begin' for 'coreos.units[0].command' (one of start, stop, restart, reload,"
     " try-restart, reload-or-restart, reload-or-try-restart)"),
    ("write_files:\n  - path: /etc/a\n    encoding: zstd\n    content: x\n",
     "line 4: error: invalid value 'zstd' for 'write_files[0].encoding' (one of base64, b64, gz, gzip, gz+base64,"
     " gzip+base64, gz+b64, gzip+b64)"),
    ("write_files:\n  - path: /etc/a\n    permissions: '0999'\n",
     "line 4: error: invalid value '0999' for 'write_files[0].permissions' (must match ^0?[0-7]{3,4}$)"),
    ("coreos:\n  update:\n    reboot_strategy: never\n",
     "line 4: error: invalid value 'never' for 'coreos.update.reboot_strategy' (one of etcd-lock, reboot, off)"),
    ("coreos:\n  locksmith:\n    window_start: '25:00'\n",
     "line 4: error: invalid value '25:00' for 'coreos.locksmith.window_start'"),
    ("manage_etc_hosts: yes-please\n", "line 2: error: invalid value 'yes-please' for 'manage_etc_hosts' (one of localhost)"),
])
def test_invalid_values(tmp_path, snippet, finding):
    assert any(f.startswith(finding) for f in problems_of(tmp_path, H + snippet)), finding


def test_etcd2_proxy_value(tmp_path):
    text = H + "coreos:\n  etcd2:\n    proxy: maybe\n"
    found = problems_of(tmp_path, text, distro="coreos")
    assert "line 4: error: invalid value 'maybe' for 'coreos.etcd2.proxy' (one of on, off, readonly)" in found


def test_write_files_rules_and_no_content_in_messages(tmp_path):
    text = H + (
        "write_files:\n"
        "  - path: /usr/share/x\n"
        "    content: hello\n"
        "  - path: /etc/tls/key.pem\n"
        "    encoding: base64\n"
        "    content: \"-----BEGIN PRIVATE KEY----- not base64\"\n"
        "  - content: orphan\n"
        "  - path: /etc/a\n"
        "    permissions: 0644\n"
    )
    found = problems_of(tmp_path, text)
    assert found == [
        "line 3: error: write_files[0].path: file cannot be written to a read-only filesystem (/usr)",
        "line 7: error: write_files[1].content cannot be decoded as 'base64'",
        "line 8: error: write_files[2] has no path",
        "line 10: error: write_files[3].permissions must be quoted, e.g. '0644': YAML reads an unquoted 0644 as the"
        " number 420",
    ]
    assert "PRIVATE KEY" not in "\n".join(found)


def test_deprecated_keys_are_warnings_and_do_not_fail(tmp_path):
    text = (CONFIGS / "coreos-etcd2.yaml").read_text()
    warnings = warnings_of(tmp_path, text, distro="coreos")
    assert "line 8: deprecated key 'etcd2' in coreos (etcd2 is no longer shipped in Container Linux)" in warnings
    assert "line 13: deprecated key 'fleet' in coreos (fleet is no longer shipped in Container Linux)" in warnings


def test_values_vmcoreos_replaces_are_warnings(tmp_path):
    text = H + "hostname: seed\ncoreos:\n  etcd2:\n    name: seed\n    discovery: 'not a url'\n"
    warnings = warnings_of(tmp_path, text, distro="coreos")
    assert "line 2: hostname is set per node by vmcoreos (the host name); the value here is replaced" in warnings
    assert "line 5: coreos.etcd2.name is set per node by vmcoreos; the value here is replaced" in warnings


def test_invalid_legacy_discovery_url_is_a_warning(tmp_path):
    text = H + "coreos:\n  etcd:\n    discovery: not-a-url\n"
    assert "line 4: warning: discovery URL is not valid" in problems_of(tmp_path, text, distro="coreos")


# -- what the cluster file decides -----------------------------------------------------------


def test_private_ipv4_under_dhcp(tmp_path):
    text = H + "coreos:\n  fleet:\n    public_ip: $private_ipv4\n"
    found = problems_of(tmp_path, text, distro="coreos", mode="dhcp", addresses=[])
    assert ("line 4: error: $private_ipv4 stays empty under DHCP on VMware (coreos-cloudinit fills it only from"
            " static guestinfo.interface addresses)") in found


def test_public_ipv4_never_has_a_value(tmp_path):
    found = problems_of(tmp_path, H + "write_files:\n  - path: /etc/ip\n    content: $public_ipv4\n")
    assert found == ["line 4: error: $public_ipv4 stays empty: vmcoreos gives each node one IPv4 address with the"
                     " private role; use $private_ipv4"]


def test_escaped_variable_is_left_alone(tmp_path):
    assert warnings_of(tmp_path, H + "write_files:\n  - path: /etc/a\n    content: \\$public_ipv4\n") == []


def test_etcd2_on_flatcar_never_runs(tmp_path):
    found = problems_of(tmp_path, (CONFIGS / "coreos-etcd2.yaml").read_text())
    assert found[0].startswith("line 8: error: Flatcar ships no etcd2.service, so coreos.etcd2 never runs there")


def test_cloud_config_on_fedora_coreos(tmp_path):
    found = problems_of(tmp_path, (CONFIGS / "flatcar-etcd-member.yaml").read_text(), distro="fedora-coreos")
    assert found[0].startswith("line 1: error: Fedora CoreOS reads only Ignition configs")


def test_legacy_etcd_is_refused_without_port_advice_that_would_not_help(tmp_path):
    # etcd 0.4 cannot be bootstrapped or checked by vmcoreos on any port, so the one error is the refusal.
    found = [f for f in problems_of(tmp_path, (CONFIGS / "seed-coreos.yaml").read_text(), distro="coreos")
             if ": error: " in f]
    assert len(found) == 1 and "coreos.etcd is etcd 0.4" in found[0] and "vmcoreos convert " in found[0]


def test_converted_legacy_ports_give_the_membership_urls(tmp_path):
    from vmcoreos.guest import convert

    text = convert.to_flatcar((CONFIGS / "seed-coreos.yaml").read_text()).text
    settings = cluster_with(tmp_path, text, etcd={"client_port": 4001, "peer_port": 7001})
    node = compose.node_configs(settings, nodeconfig.load_user_config(settings), count=3)[0]
    assert "ETCD_INITIAL_CLUSTER=lab-01=http://10.0.0.21:7001," in node.config_text
    assert "ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:4001" in node.config_text


def test_member_dropin_port_mismatch(tmp_path):
    text = H + ("coreos:\n  units:\n    - name: etcd-member.service\n      command: start\n      drop_ins:\n"
                "        - name: 20-urls.conf\n          content: |\n            [Service]\n"
                "            Environment=ETCD_ADVERTISE_CLIENT_URLS=http://$private_ipv4:4001\n")
    assert problems_of(tmp_path, text) == [
        "line 10: error: ETCD_ADVERTISE_CLIENT_URLS uses port 4001 but the cluster file's etcd.client_port is 2379;"
        " set etcd.client_port: 4001 in the cluster file so vmcoreos builds member URLs and waits on the port etcd"
        " really uses"]


def test_urls_must_name_the_nodes_own_address(tmp_path):
    text = H + ("coreos:\n  etcd2:\n    advertise_client_urls: http://10.0.0.21:2379\n"
                "    listen_peer_urls: http://10.9.9.9:2380\n")
    assert [f for f in problems_of(tmp_path, text, distro="coreos") if ": error: " in f] == [
        "line 4: error: coreos.etcd2.advertise_client_urls must name each node's own address; write $private_ipv4"
        " for the host, or leave the key out and vmcoreos fills it",
        "line 5: error: coreos.etcd2.listen_peer_urls must include 0.0.0.0 or the node's own address"
        " ($private_ipv4), and no other machine's; etcd cannot bind it otherwise",
    ]


def test_shadowed_network_unit_is_a_warning(tmp_path):
    text = H + ("coreos:\n  units:\n    - name: static.network\n      content: |\n        [Match]\n        Name=ens192\n"
                "        [Network]\n        Address=10.0.0.5/24\n")
    (warning,) = warnings_of(tmp_path, text)
    assert warning.startswith("line 4: unit static.network sets Address=, but vmcoreos gives the node its address")


def test_encoded_value_over_64_kib(tmp_path):
    blob = base64.b64encode(os.urandom(60000)).decode()
    text = H + f"write_files:\n  - path: /etc/blob\n    encoding: base64\n    content: {blob}\n"
    found = problems_of(tmp_path, text)
    assert len(found) == 3 and all(re.match(r"error: lab-0\d: the encoded config is \d+ bytes, over the 64512-byte"
                                            " guestinfo limit", f) for f in found)


# -- Ignition ---------------------------------------------------------------------------------


def _ign(version="3.3.0", **extra) -> str:
    return json.dumps({"ignition": {"version": version}, **extra}, indent=2)


@pytest.mark.parametrize("distro, version, ok", [
    ("flatcar", "3.3.0", True), ("flatcar", "3.6.0", True), ("flatcar", "3.7.0-experimental", True),
    ("flatcar", "2.3.0", True), ("flatcar", "3.8.0", False), ("flatcar", "3.7.0", False),
    ("fedora-coreos", "3.4.0", True), ("fedora-coreos", "2.3.0", False),
    ("coreos", "2.3.0", True), ("coreos", "2.2.0", True), ("coreos", "3.0.0", False),
])
def test_ignition_spec_versions_per_distro(tmp_path, distro, version, ok):
    units = [{"name": "etcd-member.service", "contents": "[Service]\nExecStart=/usr/bin/etcd\n"}]
    text = _ign(version, systemd={"units": units})
    settings = cluster_with(tmp_path, text, distro=distro, name="c.ign")
    if ok:
        nodes = compose.node_configs(settings, nodeconfig.load_user_config(settings), count=3)
        assert json.loads(nodes[0].config_text)["ignition"]["version"] == version
    else:
        with pytest.raises(ConfigError) as err:
            nodeconfig.load_user_config(settings)
        assert err.value.findings[0].startswith(f"line 3: error: Ignition spec {version} cannot be read by {distro};")


def test_old_flatcar_reads_only_spec_2_and_no_kargs(tmp_path):
    found = problems_of(tmp_path, _ign("3.3.0"), version="3033.2.4", name="c.ign")
    assert found == [
        "error: Flatcar 3033.2.4 does not read guestinfo.afterburn.initrd.network-kargs (from 3248.0.0 on), so a static"
        " address cannot reach Ignition; use a newer release or a cloud-config",
        "line 3: error: Flatcar 3033.2.4 reads Ignition spec 2.x only (spec 3 from 3185.0.0 on)",
    ]


def test_ignition_syntax_unknown_keys_butane_and_substitution(tmp_path):
    text = (
        '{\n  "ignition": {"version": "3.3.0"},\n  "sytemd": {},\n'
        '  "storage": {"files": [{"path": "/etc/k", "contents": {"inline": "SECRET"}}]},\n'
        '  "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["$private_ipv4"]}]}\n}\n'
    )
    assert problems_of(tmp_path, text, name="c.ign") == [
        "line 3: error: unrecognized key 'sytemd' at $; Ignition ignores it (\"Unused key\")",
        "line 4: error: $.storage.files[0].contents.inline is Butane syntax, not Ignition; transpile the file with"
        " `butane` first",
        "line 5: error: Ignition does not substitute $private_ipv4/$public_ipv4 (only coreos-cloudinit does); leave"
        " the etcd URLs out and vmcoreos writes each node's address",
    ]
    assert problems_of(tmp_path, '{\n  "ignition": {"version": "3.3.0"},\n}\n', name="c.ign") == [
        "line 3: error: not valid JSON: Expecting property name enclosed in double quotes"]


def test_ignition_spec_1(tmp_path):
    assert problems_of(tmp_path, '{"ignitionVersion": 1}', name="c.ign")[0].startswith(
        "line 1: error: Ignition spec 1 (ignitionVersion) cannot be merged per node; use spec 3.3.0")


def test_a_nameless_user_is_an_error_that_says_where_its_groups_belong(tmp_path):
    # The seed's slip (coreos-facts §10): the groups meant for toor became a second user with no name.
    text = (H + "users:\n  - name: toor\n    ssh_authorized_keys:\n      - ssh-ed25519 AAAA toor@x\n"
            "  - groups:\n      - sudo\n      - docker\n")
    found = problems_of(tmp_path, text)
    assert found == ["line 6: error: users[1] has no name, so coreos-cloudinit skips it and its groups are lost;"
                     " if they belong to the user above ('toor'), indent them under it, without the '- ' that starts"
                     " a new user"]
    first = problems_of(tmp_path, H + "users:\n  - groups: [sudo]\n    passwd: $6$secret\n")
    assert first == ["line 3: error: users[0] has no name, so coreos-cloudinit skips it and its groups, passwd are"
                     " lost; give it a name"]
    assert "$6$secret" not in first[0]
