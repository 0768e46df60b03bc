import ipaddress
import os
from pathlib import Path

import pytest

from vmcoreos.errors import ConfigError
from vmcoreos.clusterfile import load_cluster_file, parse_addresses, parse_cluster
from vmcoreos.connection import connection_from


def test_address_range_expands_in_cidr_form():
    got = parse_addresses("10.0.0.20-10.0.0.22/24")
    assert got == [ipaddress.IPv4Interface(f"10.0.0.{i}/24") for i in (20, 21, 22)]


@pytest.mark.parametrize(
    "text,message",
    [
        ("10.0.0.20", "no prefix length"),
        ("10.0.0.30-10.0.0.20/24", "ends before it starts"),
        ("10.0.0.250-10.0.1.5/24", "leaves its /24"),
        ("banana/24", "not a CIDR address"),
    ],
)
def test_bad_addresses_name_the_problem(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_addresses(text)


def test_duplicate_addresses_are_refused():
    with pytest.raises(ConfigError, match="lists 10.0.0.1 twice"):
        parse_cluster(
            {"cluster": "a", "node": {"network": {"mode": "static", "addresses": ["10.0.0.1/24", "10.0.0.1/24"]}}},
            base_dir=Path("."),
        )


def test_unknown_key_is_named_with_its_path():
    with pytest.raises(ConfigError, match=r"^node\.cpu: unknown key; did you mean 'cpus'\?$"):
        parse_cluster({"cluster": "a", "node": {"cpu": 2}}, base_dir=Path("."))


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"^node\.cpus: must be a whole number, not 'two'$"):
        parse_cluster({"cluster": "a", "node": {"cpus": "two"}}, base_dir=Path("."))


def test_yaml_error_reports_the_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("cluster: a\ncount: [3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:3: YAML: .*; fix the YAML syntax$"):
        load_cluster_file(f)


def test_paths_are_relative_to_the_cluster_file(tmp_path):
    s = parse_cluster({"cluster": "a", "node": {"config": "cc.yaml"}, "image": {"ova": "x.ova"}}, base_dir=tmp_path)
    assert s.node.config == tmp_path / "cc.yaml"
    assert s.image.ova == str(tmp_path / "x.ova")


def test_connection_falls_back_to_govc_variables():
    conn = connection_from(url=None, environ={"GOVC_URL": "vc.lab:8443", "GOVC_USERNAME": "u", "GOVC_PASSWORD": "p",
                                              "GOVC_INSECURE": "1"})
    assert (conn.host, conn.port, conn.username, conn.insecure) == ("vc.lab", 8443, "u", True)
    assert conn.url == "https://vc.lab:8443/sdk"


def test_vmcoreos_variables_win_over_govc():
    conn = connection_from(url=None, environ={"VMCOREOS_URL": "https://a/sdk", "GOVC_URL": "https://b/sdk",
                                              "VMCOREOS_USERNAME": "u", "VMCOREOS_PASSWORD": "p"})
    assert conn.host == "a"


def test_password_in_the_url_flag_is_refused():
    with pytest.raises(ConfigError, match="process list"):
        connection_from(url="https://u:s3cret@vc/sdk", environ={})


def test_password_never_shows_in_repr():
    conn = connection_from(url=None, environ={"VMCOREOS_URL": "https://u:s3cret@vc/sdk"})
    assert "s3cret" not in repr(conn)
    assert conn.password == "s3cret"


@pytest.mark.parametrize("password", ["S3cr/et", "Top Secret Pw", "pa#ss", "q?x=1", "a@b/c d#e"])
def test_a_password_with_url_delimiters_is_read_whole_and_never_reaches_a_message(password):
    # '/', '#', '?' and a space end the host for a URL parser: the password's text became host, port or path.
    conn = connection_from(url=None, environ={"VMCOREOS_URL": f"https://administrator:{password}@vc.example.com/sdk"})
    assert (conn.host, conn.port, conn.username, conn.password) == ("vc.example.com", 443, "administrator", password)
    assert conn.url == "https://vc.example.com:443/sdk"
    for broken in (f"https://administrator:{password}@", f"https://administrator:{password}@vc:44x/sdk"):
        with pytest.raises(ConfigError) as refused:
            connection_from(url=None, environ={"VMCOREOS_URL": broken})
        assert password not in refused.value.message and password.split("/")[0] not in refused.value.message
    with pytest.raises(ConfigError, match="process list") as refused:
        connection_from(url=f"https://administrator:{password}@vc.example.com/sdk", environ={})
    assert password not in refused.value.message


def test_password_file_must_be_private(tmp_path):
    f = tmp_path / "pw"
    f.write_text("pw\n")
    os.chmod(f, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        connection_from(url="https://vc/sdk", username="u", password_file=f, environ={})
    os.chmod(f, 0o600)
    assert connection_from(url="https://vc/sdk", username="u", password_file=f, environ={}).password == "pw"


def test_missing_credentials_say_which_variables():
    with pytest.raises(ConfigError, match="VMCOREOS_USERNAME"):
        connection_from(url="https://vc/sdk", environ={})


@pytest.mark.parametrize("node, message", [
    ({"memory_mb": 1001}, r"node.memory_mb: 1001 is not a multiple of 4, which ESXi refuses; use 1000 or 1004"),
    ({"memory_mb": 128}, r"node.memory_mb: must be at least 256"),
    ({"memory_mb": 25 << 20}, r"node.memory_mb: must be at most 25165824"),
    ({"cpus": 0}, r"node.cpus: must be at least 1"),
    ({"cpus": 1000}, r"node.cpus: must be at most 768"),
])
def test_node_hardware_vsphere_would_refuse_at_clone_time_is_refused_up_front(node, message):
    with pytest.raises(ConfigError, match=message):
        parse_cluster({"cluster": "a", "node": node}, base_dir=Path("."))


def test_node_hardware_vsphere_accepts_is_kept():
    node = parse_cluster({"cluster": "a", "node": {"memory_mb": 1028, "cpus": 768}}, base_dir=Path(".")).node
    assert (node.memory_mb, node.cpus) == (1028, 768)
