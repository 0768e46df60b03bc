"""vmcoreos convert: each mapping and each report line, the CLI's output rules, the shipped examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.harness import guestsim
from vmcoreos.errors import ConfigError
from vmcoreos.guest import cloudconfig, compose, convert, nodeconfig
from vmcoreos.clusterfile import parse_cluster

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _settings(config: Path, distro: str = "flatcar", **etcd):
    return parse_cluster({"cluster": "lab", "image": {"distro": distro}, "etcd": etcd,
                          "node": {"config": str(config),
                                   "network": {"mode": "static", "addresses": ["10.0.0.11-10.0.0.13/24"]}}},
                         base_dir=Path("."))


def _dropin_env(text: str) -> dict[str, str]:
    doc = yaml.safe_load(text)
    member = next(u for u in doc["coreos"]["units"] if u["name"] == "etcd-member.service")
    dropin = next(d for d in member["drop_ins"] if d["name"] == convert.DROPIN)
    return cloudconfig.dropin_env(dropin["content"])


def _etcd2(body: str) -> str:
    return f"#cloud-config\ncoreos:\n  etcd2:\n{body}  units:\n    - name: etcd2.service\n      command: start\n"


def _etcd04(body: str) -> str:
    return f"#cloud-config\ncoreos:\n  etcd:\n{body}  units:\n    - name: etcd.service\n      command: start\n"


# Every coreos.etcd2 field coreos-cloudinit turned into ETCD_<UPPER>, as guestsim (written from CCI) names them.
_PLAIN_ETCD2 = [k for k, _, _ in guestsim.ETCD2_FIELDS
                if k not in convert._ETCD2_CHANGED and k not in convert._PER_NODE and k != "proxy"]


@pytest.mark.parametrize("key", _PLAIN_ETCD2)
def test_each_etcd2_field_becomes_the_etcd_variable_coreos_cloudinit_wrote(key):
    kind = next(t for k, _, t in guestsim.ETCD2_FIELDS if k == key)
    value = {"bool": "true", "int": "7"}.get(kind, "http://$private_ipv4:2379")
    result = convert.to_flatcar(_etcd2(f"    {key}: {value}\n"))
    want = next(env for k, env, _ in guestsim.ETCD2_FIELDS if k == key)
    assert _dropin_env(result.text)[want] == value
    assert [str(c) for c in result.changes if c.path.endswith(key)][0].startswith(
        f"line 4: mapped: coreos.etcd2.{key}: {want}")


@pytest.mark.parametrize("key, value, written", [
    ("ca_file", "/etc/ssl/ca.pem", {"ETCD_TRUSTED_CA_FILE": "/etc/ssl/ca.pem", "ETCD_CLIENT_CERT_AUTH": "true"}),
    ("peer_ca_file", "/etc/ssl/ca.pem", {"ETCD_PEER_TRUSTED_CA_FILE": "/etc/ssl/ca.pem",
                                         "ETCD_PEER_CLIENT_CERT_AUTH": "true"}),
    ("debug", "true", {"ETCD_LOG_LEVEL": "debug"}),
    ("log_package_levels", "etcdserver=DEBUG", {}),
])
def test_etcd2_flags_etcd3_dropped_are_rewritten_and_reported(key, value, written):
    result = convert.to_flatcar(_etcd2(f"    {key}: {value}\n"))
    env = _dropin_env(result.text)
    assert {k: env[k] for k in written} == written
    assert f"ETCD_{key.upper()}" not in env
    (change,) = [c for c in result.changes if c.path == f"coreos.etcd2.{key}"]
    assert change.line == 4 and change.action == ("mapped" if written else "dropped") and "etcd 3" in change.message


@pytest.mark.parametrize("key", ["name", "initial_cluster", "initial_cluster_state", "initial_cluster_token",
                                 "discovery"])
def test_per_node_etcd2_keys_are_left_to_vmcoreos(key):
    result = convert.to_flatcar(_etcd2(f"    {key}: x\n"))
    assert f"ETCD_{key.upper()}" not in _dropin_env(result.text)
    (change,) = [c for c in result.changes if c.path == f"coreos.etcd2.{key}"]
    assert change.action == "dropped" and "per node" in change.message


def test_proxy_is_kept_with_its_deprecation_reported():
    result = convert.to_flatcar(_etcd2("    proxy: readonly\n"))
    assert _dropin_env(result.text)["ETCD_PROXY"] == "readonly"
    assert any("3.6 removes it" in c.message for c in result.changes if c.path == "coreos.etcd2.proxy")


@pytest.mark.parametrize("key, value, var, want", [
    ("addr", "$private_ipv4:4001", "ETCD_ADVERTISE_CLIENT_URLS", "http://$private_ipv4:4001"),
    ("peer_addr", "$private_ipv4:7001", "ETCD_INITIAL_ADVERTISE_PEER_URLS", "http://$private_ipv4:7001"),
    ("bind_addr", "0.0.0.0:4001", "ETCD_LISTEN_CLIENT_URLS", "http://0.0.0.0:4001"),
    ("peer_bind_addr", "0.0.0.0:7001", "ETCD_LISTEN_PEER_URLS", "http://0.0.0.0:7001"),
    ("cert_file", "/c.pem", "ETCD_CERT_FILE", "/c.pem"),
    ("key_file", "/k.pem", "ETCD_KEY_FILE", "/k.pem"),
    ("ca_file", "/ca.pem", "ETCD_TRUSTED_CA_FILE", "/ca.pem"),
    ("peer_cert_file", "/c.pem", "ETCD_PEER_CERT_FILE", "/c.pem"),
    ("peer_key_file", "/k.pem", "ETCD_PEER_KEY_FILE", "/k.pem"),
    ("peer_ca_file", "/ca.pem", "ETCD_PEER_TRUSTED_CA_FILE", "/ca.pem"),
    ("cors", "*", "ETCD_CORS", "*"),
    ("data_dir", "/var/lib/etcd", "ETCD_DATA_DIR", "/var/lib/etcd"),
    ("snapshot_count", "5000", "ETCD_SNAPSHOT_COUNT", "5000"),
    ("peer_heartbeat_interval", "100", "ETCD_HEARTBEAT_INTERVAL", "100"),
    ("peer_election_timeout", "1000", "ETCD_ELECTION_TIMEOUT", "1000"),
])
def test_each_etcd04_field_with_an_etcd3_equivalent_is_mapped(key, value, var, want):
    result = convert.to_flatcar(_etcd04(f"    {key}: '{value}'\n"))
    assert _dropin_env(result.text)[var] == want
    (change,) = [c for c in result.changes if c.path == f"coreos.etcd.{key}"]
    assert change.line == 4 and change.action == "mapped" and change.message.startswith(var)


_ETCD04_ONLY = ["cluster_active_size", "cluster_remove_delay", "cluster_sync_interval", "graphite_host",
                "http_read_timeout", "http_write_timeout", "max_result_buffer", "max_retry_attempts",
                "retry_interval", "snapshot", "trace", "verbose", "very_verbose", "very_very_verbose"]


@pytest.mark.parametrize("key", _ETCD04_ONLY + ["peers", "peers_file", "initial_cluster", "listen_client_urls"])
def test_etcd04_fields_without_a_mapping_are_reported(key):
    result = convert.to_flatcar(_etcd04(f"    {key}: '1'\n    addr: $private_ipv4:2379\n"))
    env = _dropin_env(result.text)
    assert set(env) == {"ETCD_ADVERTISE_CLIENT_URLS", "ETCD_ENABLE_V2"}
    (change,) = [c for c in result.changes if c.path == f"coreos.etcd.{key}"]
    assert change.line == 4 and change.action == "dropped" and change.message


def test_the_classic_config_becomes_etcd_member_without_fleet_and_keeps_the_rest():
    text = (CONFIGS / "classic-etcd2-fleet.yaml").read_text()
    result = convert.to_flatcar(text)
    doc = yaml.safe_load(result.text)
    assert "etcd2" not in doc["coreos"] and "fleet" not in doc["coreos"]
    assert [u["name"] for u in doc["coreos"]["units"]] == ["etcd-member.service", "docker.service"]
    assert doc["coreos"]["units"][0]["command"] == "start"
    assert doc["users"] == yaml.safe_load(text)["users"]
    assert "# The classic CoreOS Container Linux cluster node" in result.text  # comments kept
    assert _dropin_env(result.text)["ETCD_ADVERTISE_CLIENT_URLS"] == "http://$private_ipv4:2379"
    assert [str(c) for c in result.changes] == [
        "line 11: removed: coreos.etcd2: now the etcd-member.service drop-in 20-etcd.conf (ETCD_* lines, as"
        " coreos-cloudinit wrote them for etcd2.service)",
        "line 12: mapped: coreos.etcd2.advertise_client_urls: ETCD_ADVERTISE_CLIENT_URLS",
        "line 13: mapped: coreos.etcd2.initial_advertise_peer_urls: ETCD_INITIAL_ADVERTISE_PEER_URLS",
        "line 14: mapped: coreos.etcd2.listen_client_urls: ETCD_LISTEN_CLIENT_URLS",
        "line 15: mapped: coreos.etcd2.listen_peer_urls: ETCD_LISTEN_PEER_URLS",
        "line 16: mapped: coreos.etcd2.heartbeat_interval: ETCD_HEARTBEAT_INTERVAL",
        f"line 17: removed: coreos.fleet: {convert.FLEET_GONE}",
        "line 21: renamed: coreos.units[0] etcd2.service: now etcd-member.service (etcd 3.5 from a container image)",
        f"line 23: removed: coreos.units[1] fleet.service: {convert.FLEET_GONE}",
        f"added: etcd-member.service 20-etcd.conf: {convert.V2_API}",
    ]


def test_the_converted_classic_config_in_configs_is_what_the_tool_writes():
    result = convert.to_flatcar((CONFIGS / "classic-etcd2-fleet.yaml").read_text())
    assert (CONFIGS / "classic-etcd2-fleet-flatcar.yaml").read_text() == result.text


def test_the_converted_config_passes_flatcar_validation_and_the_original_is_refused_with_the_command(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text((CONFIGS / "classic-etcd2-fleet.yaml").read_text())
    with pytest.raises(ConfigError) as refused:
        nodeconfig.load_user_config(_settings(old))
    cmd = f"vmcoreos convert {old} --to flatcar -o {tmp_path / 'old-flatcar.yaml'}"
    assert sum(cmd in f for f in refused.value.findings) == 4  # etcd2, fleet, etcd2.service, fleet.service
    new = tmp_path / "old-flatcar.yaml"
    new.write_text(convert.to_flatcar(old.read_text()).text)
    user = nodeconfig.load_user_config(_settings(new))
    assert user.warnings == ()
    (node,) = compose.node_configs(_settings(new), user, count=3, only=["lab-02"])
    # The node's own address reaches the drop-in only through coreos-cloudinit's substitution.
    guest = guestsim.apply_substitutions(node.config_text, {"$private_ipv4": "10.0.0.12"})
    assert _dropin_env(guest)["ETCD_ADVERTISE_CLIENT_URLS"] == "http://10.0.0.12:2379"


def test_units_that_start_fleet_or_etcd2_without_their_section_are_errors_on_flatcar(tmp_path):
    path = tmp_path / "node.yaml"
    path.write_text("#cloud-config\ncoreos:\n  units:\n    - name: fleet.service\n      command: start\n")
    with pytest.raises(ConfigError) as refused:
        nodeconfig.load_user_config(_settings(path))
    (finding,) = refused.value.findings
    assert finding.startswith("line 4: error: unit fleet.service does not exist on Flatcar")
    assert convert.command(str(path)) in finding


def test_etcd04_on_coreos_is_refused_with_the_convert_command():
    with pytest.raises(ConfigError) as refused:
        nodeconfig.load_user_config(_settings(CONFIGS / "seed-coreos.yaml", "coreos", client_port=4001,
                                              peer_port=7001))
    errors = [f for f in refused.value.findings if ": error: " in f]
    assert len(errors) == 1 and "etcd 0.4" in errors[0]
    assert convert.command(str(CONFIGS / "seed-coreos.yaml")) in errors[0]


def test_seed_config_converts_and_reports_its_ports():
    result = convert.to_flatcar((CONFIGS / "seed-coreos.yaml").read_text())
    notes = [str(c) for c in result.changes if c.action == "note"]
    assert notes == ["note: ETCD_ADVERTISE_CLIENT_URLS: etcd uses port 4001; set etcd.client_port: 4001 in the"
                     " cluster file",
                     "note: ETCD_INITIAL_ADVERTISE_PEER_URLS: etcd uses port 7001; set etcd.peer_port: 7001 in the"
                     " cluster file"]


def test_hyphenated_keys_are_written_with_underscores():
    result = convert.to_flatcar(_etcd2("    advertise-client-urls: http://$private_ipv4:2379\n"))
    assert _dropin_env(result.text)["ETCD_ADVERTISE_CLIENT_URLS"] == "http://$private_ipv4:2379"
    assert str(result.changes[1]) == ("line 4: renamed: coreos.etcd2.advertise-client-urls: written"
                                      " 'advertise_client_urls': Flatcar's coreos-cloudinit ignores keys with '-'")


def test_existing_member_unit_takes_the_etcd2_unit_and_references_follow():
    text = ("#cloud-config\ncoreos:\n  etcd2:\n    heartbeat_interval: 100\n  units:\n"
            "    - name: etcd2.service\n      command: start\n      content: |\n        [Service]\n"
            "    - name: etcd-member.service\n      enable: true\n"
            "    - name: app.service\n      content: |\n        [Unit]\n        After=etcd2.service\n")
    result = convert.to_flatcar(text)
    units = yaml.safe_load(result.text)["coreos"]["units"]
    assert [u["name"] for u in units] == ["etcd-member.service", "app.service"]
    assert units[0]["command"] == "start" and units[0]["enable"] is True
    assert "After=etcd-member.service" in units[1]["content"]
    actions = {(c.action, c.path) for c in result.changes}
    assert ("dropped", "coreos.units[0] etcd2.service content") in actions
    assert ("removed", "coreos.units[0] etcd2.service") in actions
    assert ("renamed", "coreos.units[1] app.service") in actions


@pytest.mark.parametrize("text, message", [
    ("coreos: {}\n", "is not a cloud-config"),
    ("#cloud-config\ncoreos: [\n", "fix the YAML syntax"),
    ("#cloud-config\nbogus: 1\n", "has problems conversion does not fix"),
    ('#cloud-config\ncoreos:\n  etcd2:\n    cors: \'a"b\'\n', "quote, backslash or line break"),
])
def test_configs_that_cannot_be_converted_are_refused(text, message):
    with pytest.raises(ConfigError) as refused:
        convert.to_flatcar(text)
    assert message in refused.value.message and "\n" not in refused.value.message


def test_percent_in_a_value_survives_systemd():
    result = convert.to_flatcar(_etcd2("    cors: 'a%b'\n"))
    env = guestsim.split_environment('"ETCD_CORS=a%%b"', {}, [])
    assert 'Environment="ETCD_CORS=a%%b"' in result.text and env == [("ETCD_CORS", "a%b")]


# -- the command ------------------------------------------------------------------------


def test_cli_writes_the_file_and_reports_each_change_on_stderr(cli, tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text((CONFIGS / "classic-etcd2-fleet.yaml").read_text())
    before = old.read_text()
    run = cli(["convert", str(old), "--to", "flatcar", "-o", str(tmp_path / "new.yaml")])
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert (tmp_path / "new.yaml").read_text() == convert.to_flatcar(before).text and old.read_text() == before
    lines = run.stderr.splitlines()
    assert len(lines) == 10 and all(line.startswith(f"vmcoreos: {old} ") for line in lines)
    assert f"vmcoreos: {old} line 17: removed: coreos.fleet: {convert.FLEET_GONE}" in lines


def test_cli_prints_on_stdout_without_o_and_json_gives_the_report(cli, tmp_path):
    config = str(CONFIGS / "classic-etcd2-fleet.yaml")
    plain = cli(["convert", config, "--to", "flatcar", "-o", "-"])
    assert plain.returncode == 0 and plain.stdout == (CONFIGS / "classic-etcd2-fleet-flatcar.yaml").read_text()
    data = json.loads(cli(["convert", config, "--to", "flatcar", "--json"]).stdout)
    assert data["output"] is None and data["config"] == plain.stdout
    assert data["changes"][1] == {"line": 12, "action": "mapped", "path": "coreos.etcd2.advertise_client_urls",
                                  "message": "ETCD_ADVERTISE_CLIENT_URLS"}


def test_cli_never_overwrites_its_input(cli, tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text((CONFIGS / "classic-etcd2-fleet.yaml").read_text())
    run = cli(["convert", str(old), "--to", "flatcar", "-o", f"{tmp_path}/./old.yaml"])
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == (f"vmcoreos: error: -o {tmp_path}/./old.yaml is the input itself and convert never"
                          f" overwrites it; write a new file, e.g. -o {tmp_path}/old-flatcar.yaml\n")
    assert old.read_text() == (CONFIGS / "classic-etcd2-fleet.yaml").read_text()


def test_cli_names_an_output_it_cannot_write(cli, tmp_path):
    out = f"{tmp_path}/missing/new.yaml"
    run = cli(["convert", str(CONFIGS / "classic-etcd2-fleet.yaml"), "--to", "flatcar", "-o", out])
    assert run.returncode == 2
    assert run.stderr == f"vmcoreos: error: cannot write {out}: No such file or directory; pick another -o\n"
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_other_targets(cli):
    run = cli(["convert", str(CONFIGS / "classic-etcd2-fleet.yaml"), "--to", "ignition"])
    assert run.returncode == 2 and run.stderr == "vmcoreos: error: --to 'ignition' is not supported; use --to flatcar\n"


def test_classic_config_refused_on_flatcar_with_the_command_in_the_message(cli, tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text((CONFIGS / "classic-etcd2-fleet.yaml").read_text())
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(yaml.safe_dump({"cluster": "lab", "node": {"config": "old.yaml", "network": {
        "mode": "static", "addresses": ["10.0.0.11-10.0.0.13/24"]}}}))
    run = cli(["render", "-c", str(cluster)])
    assert run.returncode == 2 and run.stdout == ""
    assert f"vmcoreos convert {old} --to flatcar -o {tmp_path}/old-flatcar.yaml" in run.stderr


def test_init_writes_examples_that_render_and_never_overwrites(cli, tmp_path):
    run = cli(["init", str(tmp_path / "lab")])
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "lab" / "node.yaml").read_text().startswith("#cloud-config\n")
    rendered = cli(["render", "-c", str(tmp_path / "lab" / "cluster.yaml")])
    assert rendered.returncode == 0 and rendered.stderr == "", rendered.stderr
    again = cli(["init", str(tmp_path / "lab")])
    assert again.returncode == 2
    assert again.stderr == (f"vmcoreos: error: {tmp_path}/lab/cluster.yaml already exists and init never overwrites;"
                            " run init in an empty directory (`vmcoreos init DIR`)\n")


# -- etcd.image ---------------------------------------------------------------------------


def test_etcd_image_reaches_the_membership_dropin():
    settings = _settings(CONFIGS / "flatcar-etcd-member.yaml", image="registry.lab:5000/coreos/etcd:v3.5.16")
    (node,) = compose.node_configs(settings, nodeconfig.load_user_config(settings), count=3, only=["lab-01"])
    doc = yaml.safe_load(node.config_text)
    member = next(u for u in doc["coreos"]["units"] if u["name"] == "etcd-member.service")
    ours = next(d for d in member["drop_ins"] if d["name"] == cloudconfig.MEMBER_DROPIN)
    assert cloudconfig.dropin_env(ours["content"])["ETCD_IMAGE"] == "registry.lab:5000/coreos/etcd:v3.5.16"


@pytest.mark.parametrize("image", ['quay.io/coreos/etcd"', "quay.io/coreos/etcd\nExecStart=/bin/sh", "a b",
                                   "Quay.io/CoreOS/etcd", ""])
def test_etcd_image_must_be_an_image_reference(image):
    with pytest.raises(ConfigError) as refused:
        _settings(Path("node.yaml"), image=image)
    assert refused.value.message.startswith("etcd.image is not a container image reference")


@pytest.mark.parametrize("image", ["quay.io/coreos/etcd:v3.5.16", "etcd", "localhost:5000/etcd@sha256:" + "a" * 64,
                                   "mirror.lab/library/etcd_x-y:3.5"])
def test_etcd_image_accepts_references(image):
    assert _settings(Path("node.yaml"), image=image).etcd.image == image


SEED = Path(__file__).parent / "data" / "seed-verbatim.yaml"  # coreos-facts §10, as the project found it


def _seed_fixed() -> str:
    """The seed with its slip fixed as the finding says: the groups indented under toor."""
    return SEED.read_text().replace("    - groups:\n", "      groups:\n")


def test_the_seeds_nameless_user_is_refused_with_the_fix_and_what_convert_would_do():
    with pytest.raises(ConfigError) as err:
        convert.to_flatcar(SEED.read_text(), source="seed.yaml")
    findings = err.value.findings
    assert findings[0] == ("line 25: error: users[1] has no name, so coreos-cloudinit skips it and its groups are"
                           " lost; if they belong to the user above ('toor'), indent them under it, without the '- '"
                           " that starts a new user")
    assert any("static.network" in f and "would be the same on every node" in f for f in findings[1:])


def test_static_network_moves_to_a_suggested_node_network_and_the_unit_goes():
    result = convert.to_flatcar(_seed_fixed())
    units = [u["name"] for u in yaml.safe_load(result.text)["coreos"]["units"]]
    assert units == ["etcd-member.service", "docker.service"]
    notes = [c for c in result.changes if "static.network" in c.path]
    assert [(c.line, c.action) for c in notes] == [(12, "dropped"), (12, "note")]
    assert notes[1].message.endswith("node.network: {mode: static, addresses: [192.168.249.20-192.168.249.22/24],"
                                     " gateway: 192.168.249.2, dns: [192.168.249.2, 192.168.249.1]}")
    groups = yaml.safe_load(result.text)["users"][0]
    assert groups["name"] == "toor" and groups["groups"] == ["sudo", "docker"] and "ssh_authorized_keys" in groups


def test_a_dhcp_network_unit_is_kept():
    text = ("#cloud-config\ncoreos:\n  units:\n    - name: 10-dhcp.network\n      content: |\n"
            "        [Match]\n        Name=e*\n        [Network]\n        DHCP=yes\n")
    assert "10-dhcp.network" in convert.to_flatcar(text).text


@pytest.mark.parametrize("text, said", [
    (_etcd04(""), "etcd 0.4 served clients on port 4001 and peers on 7001"),
    (_etcd2(""), "etcd2 served clients on port 4001 as well as 2379"),
    ("#cloud-config\ncoreos:\n  units:\n    - name: etcd.service\n      command: start\n",
     "etcd 0.4 served clients on port 4001"),
])
def test_users_of_the_old_default_ports_are_told_how_to_keep_them(text, said):
    notes = [c.message for c in convert.to_flatcar(text).changes if c.path == "etcd ports"]
    assert len(notes) == 1 and said in notes[0]
    assert "ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379,http://0.0.0.0:4001" in notes[0]
    assert "etcd.client_port: 4001" in notes[0]


def test_output_ends_with_a_newline_even_when_the_input_does_not(cli, tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(_seed_fixed().rstrip("\n"))
    run = cli(["convert", str(old), "-o", str(tmp_path / "new.yaml")])  # --to defaults to flatcar
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "new.yaml").read_text().endswith("docker\n")
