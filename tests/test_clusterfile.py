"""The cluster file as a user writes it: every finding at once with its line, the editor schema, govc's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmcoreos.errors import ConfigError, ExitCode
from vmcoreos.clusterfile import load_cluster_file, parse_cluster
from vmcoreos.settings import VSphereTarget

STATIC = "node:\n  network:\n    mode: static\n    addresses: [10.0.0.21-10.0.0.23/24]\n"


def _refused(tmp_path: Path, text: str) -> ConfigError:
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as refused:
        load_cluster_file(path, environ={})
    assert refused.value.exit_code == ExitCode.USAGE
    return refused.value


def test_two_typos_show_two_findings_with_lines_and_suggestions(tmp_path):
    err = _refused(tmp_path, "cluster: lab\ncuont: 3\nnode:\n  cpus: 2\n  memroy_mb: 4096\n")
    assert err.message == f"cluster file {tmp_path / 'cluster.yaml'} has 2 problems; fix them and run again"
    where = tmp_path / "cluster.yaml"
    assert err.findings == [
        f"{where}:2: cuont: unknown key; did you mean 'count'?",
        f"{where}:5: node.memroy_mb: unknown key; did you mean 'memory_mb'?",
    ]


def test_every_kind_of_problem_is_found_in_one_pass(tmp_path):
    err = _refused(tmp_path, (
        "cluster: Lab_1\n"           # 1
        "vsphere:\n"                 # 2
        "  datastor: DS0\n"          # 3
        "node:\n"                    # 4
        "  cpus: two\n"              # 5
        "  memory_mb: 100\n"         # 6
        "  network:\n"               # 7
        "    mode: fixed\n"          # 8
        "    dns: [10.0.0.300]\n"    # 9
        "image:\n"                   # 10
        "  distro: ubuntu\n"         # 11
        "wait: 5\n"                  # 12
    ))
    where = tmp_path / "cluster.yaml"
    assert err.findings == [
        f"{where}:1: cluster: must be lower-case letters, digits and '-' (it becomes host names); pick another",
        f"{where}:3: vsphere.datastor: unknown key; did you mean 'datastore'?",
        f"{where}:5: node.cpus: must be a whole number, not 'two'",
        f"{where}:6: node.memory_mb: must be at least 256",
        f"{where}:8: node.network.mode: must be 'static' or 'dhcp', not 'fixed'",
        f"{where}:9: node.network.dns[0]: '10.0.0.300' is not an IPv4 address",
        f"{where}:11: image.distro: must be 'flatcar', 'coreos' or 'fedora-coreos', not 'ubuntu'",
        f"{where}:12: wait: must be a mapping of keys; see the example `vmcoreos init` writes for the layout",
    ]


def test_one_problem_is_one_line_naming_file_line_and_key(tmp_path):
    err = _refused(tmp_path, "cluster: lab\nnode:\n  memory_mb: 128\n")
    assert (err.message, err.findings) == (f"{tmp_path / 'cluster.yaml'}:3: node.memory_mb: must be at least 256", [])


def test_duplicate_keys_are_refused_not_silently_the_last(tmp_path):
    err = _refused(tmp_path, "cluster: lab\ncount: 3\nnode:\n  cpus: 2\n  cpus: 4\ncount: 5\n")
    where = tmp_path / "cluster.yaml"
    assert err.findings == [
        f"{where}:5: node.cpus: duplicate key (first at line 4); keep one",
        f"{where}:6: count: duplicate key (first at line 2); keep one",
    ]


def test_static_network_without_addresses_points_at_the_network_section(tmp_path):
    err = _refused(tmp_path, "cluster: lab\nnode:\n  network:\n    mode: static\n")
    assert err.message == (f"{tmp_path / 'cluster.yaml'}:3: node.network.addresses: empty, but node.network.mode"
                           " is static; list one address per node")


def test_unknown_key_with_no_near_name_lists_the_known_ones(tmp_path):
    err = _refused(tmp_path, "cluster: lab\nwait:\n  zzz: 1\n")
    assert err.message == (f"{tmp_path / 'cluster.yaml'}:3: wait.zzz: unknown key;"
                           " known keys here: task_stall, timeout, upload_stall")


def test_the_phase_limits_are_read_from_the_wait_section(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("cluster: lab\nwait:\n  timeout: 90\n  task_stall: 1200\n  upload_stall: 45.5\n")
    s = load_cluster_file(path, environ={})
    assert (s.wait_timeout, s.task_stall, s.upload_stall) == (90, 1200, 45.5)
    path.write_text("cluster: lab\n")
    s = load_cluster_file(path, environ={})
    assert (s.wait_timeout, s.task_stall, s.upload_stall) == (600, 600, 300)


@pytest.mark.parametrize("key", ["task_stall", "upload_stall"])
def test_a_phase_limit_of_zero_is_refused_on_its_line(tmp_path, key):
    err = _refused(tmp_path, f"cluster: lab\nwait:\n  {key}: 0\n")
    assert err.message == f"{tmp_path / 'cluster.yaml'}:3: wait.{key}: must be more than 0"


def test_empty_cluster_file_is_named(tmp_path):
    err = _refused(tmp_path, "# nothing yet\n")
    assert err.message == f"cluster file {tmp_path / 'cluster.yaml'} is empty; start from the example `vmcoreos init` writes"


def test_a_list_as_a_key_is_a_yaml_error_with_its_line(tmp_path):
    err = _refused(tmp_path, "cluster: lab\nnode:\n  ? [a, b]\n  : 1\n")
    assert err.message.startswith(f"{tmp_path / 'cluster.yaml'}:3: YAML: found unhashable key")


@pytest.mark.parametrize("make,why", [
    (lambda p: p.mkdir(), "Is a directory"),
    (lambda p: p.write_bytes(b"cluster: \xff\xfe\n"), "not UTF-8 text"),
])
def test_unreadable_cluster_file_is_a_usage_error_naming_the_option(tmp_path, make, why):
    path = tmp_path / "cluster.yaml"
    make(path)
    with pytest.raises(ConfigError) as refused:
        load_cluster_file(path, environ={})
    assert refused.value.message == f"cannot read cluster file {path}: {why}; pass -c with the path of your cluster file"


def test_missing_name_says_how_nodes_are_named(tmp_path):
    err = _refused(tmp_path, "count: 3\n")
    assert err.message == (f"{tmp_path / 'cluster.yaml'}: cluster: missing; add 'cluster: <name>'"
                           " (node VMs are named <name>-01, <name>-02, …)")


def test_empty_sections_and_numbers_as_text_read_as_before(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("cluster: lab\ncount:\nvsphere:\n  datastore: 42\nimage:\n  version: 3033.2\n" + STATIC + "etcd:\n")
    s = load_cluster_file(path, environ={})
    assert (s.count, s.vsphere.datastore, s.image.version, len(s.node.network.addresses)) == (3, "42", "3033.2", 3)


def test_cli_prints_each_finding_on_its_own_line(cli, tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("cluster: lab\ncuont: 3\nnode:\n  cpus: 0\n")
    run = cli(["render", "-c", str(path)])
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"vmcoreos: error: cluster file {path} has 2 problems; fix them and run again",
        f"  {path}:2: cuont: unknown key; did you mean 'count'?",
        f"  {path}:4: node.cpus: must be at least 1",
    ]


# -- the schema shipped for editors ------------------------------------------------------


def test_shipped_schema_is_the_model_s():
    from vmcoreos import clusterfile_model

    shipped = clusterfile_model.SCHEMA_FILE.read_text()
    assert shipped == clusterfile_model.json_schema_text(), (
        "examples/cluster.schema.json is stale; run: python -m vmcoreos.clusterfile_model")


def test_schema_forbids_unknown_keys_at_every_level():
    import json

    from vmcoreos import clusterfile_model

    schema = json.loads(clusterfile_model.json_schema_text())
    sections = [schema, *schema["$defs"].values()]
    assert len(sections) == 7 and all(s["additionalProperties"] is False for s in sections)
    assert schema["required"] == ["cluster"]


# -- govc's inventory variables -------------------------------------------------------------

GOVC = {
    "GOVC_DATACENTER": "DC1",
    "GOVC_DATASTORE": "/DC1/datastore/SSD 1",
    "GOVC_NETWORK": "Lab Net",
    "GOVC_RESOURCE_POOL": "/DC1/host/C1/Resources",
    "GOVC_FOLDER": "/DC1/vm/labs/etcd",
}


def test_govc_variables_fill_what_the_cluster_file_leaves_out():
    s = parse_cluster({"cluster": "lab"}, base_dir=Path("."), environ=GOVC)
    assert s.vsphere == VSphereTarget(datacenter="DC1", cluster="C1", datastore="SSD 1", network="Lab Net",
                                      folder="labs/etcd")
    assert s.vsphere.origin("datastore") == "GOVC_DATASTORE"  # what inventory lookup errors name


def test_the_cluster_file_wins_over_govc_variables():
    mine = {"datacenter": "DC0", "cluster": "C0", "datastore": "DS0", "network": "Net0", "folder": "f"}
    s = parse_cluster({"cluster": "lab", "vsphere": mine}, base_dir=Path("."), environ=GOVC)
    assert s.vsphere == VSphereTarget(**mine)
    partial = parse_cluster({"cluster": "lab", "vsphere": {"datastore": "DS0"}}, base_dir=Path("."), environ=GOVC)
    assert (partial.vsphere.datastore, partial.vsphere.datacenter) == ("DS0", "DC1")
    assert (partial.vsphere.origin("datastore"), partial.vsphere.origin("datacenter")) == (
        "vsphere.datastore", "GOVC_DATACENTER")


@pytest.mark.parametrize("pool,cluster", [("C1", "C1"), ("C1/Resources", "C1"), ("*/Resources", None)])
def test_govc_resource_pool_forms(pool, cluster):
    s = parse_cluster({"cluster": "lab"}, base_dir=Path("."), environ={"GOVC_RESOURCE_POOL": pool})
    assert s.vsphere.cluster == cluster


def test_govc_child_pool_is_refused_unless_the_file_names_the_cluster():
    env = {"GOVC_RESOURCE_POOL": "C1/Resources/gold"}
    with pytest.raises(ConfigError, match=r"^GOVC_RESOURCE_POOL='C1/Resources/gold' names a child resource pool;"
                                          r".*set vsphere\.cluster in the cluster file or unset GOVC_RESOURCE_POOL$"):
        parse_cluster({"cluster": "lab"}, base_dir=Path("."), environ=env)
    s = parse_cluster({"cluster": "lab", "vsphere": {"cluster": "C0"}}, base_dir=Path("."), environ=env)
    assert s.vsphere.cluster == "C0"


def test_govc_path_of_the_wrong_kind_names_the_variable():
    with pytest.raises(ConfigError, match=r"^GOVC_DATASTORE='/DC1/network/x' is not an inventory path like"
                                          r" /<datacenter>/datastore/<name>"):
        parse_cluster({"cluster": "lab"}, base_dir=Path("."), environ={"GOVC_DATASTORE": "/DC1/network/x"})


def test_every_cluster_file_key_lands_in_a_settings_field_of_its_name():
    """The settings are built from the model by name (clusterfile._typed): a key added to the model
    without a settings field of the same name (or a spelled-out mapping) would be dropped silently."""
    import dataclasses

    from vmcoreos import clusterfile_model as m
    from vmcoreos import settings as s

    sections = [(m.VSphere, s.VSphereTarget, {}), (m.Image, s.ImageSettings, {}), (m.Network, s.NetworkSettings, {}),
                (m.Node, s.NodeSettings, {}), (m.Etcd, s.EtcdSettings, {}),
                (m.Wait, s.ClusterSettings, {"timeout": "wait_timeout"}),
                (m.ClusterFile, s.ClusterSettings, {"cluster": "name", "wait": None})]
    for model, typed, renamed in sections:
        fields = {f.name for f in dataclasses.fields(typed)}
        keys = {renamed.get(k, k) for k in model.model_fields} - {None}
        assert keys <= fields, (model.__name__, keys - fields)


def test_settings_carry_every_section_value_from_the_file(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text("cluster: lab\ncount: 5\nvsphere: {datacenter: DC, host: esx-2}\n"
                    "image: {channel: beta, version: '4593.2.5', allow_unsigned_version: true}\n"
                    "node: {cpus: 4, memory_mb: 4096, linked_clone: true}\n"
                    "etcd: {bootstrap: discovery, discovery: 'https://d.example/x', client_port: 12379, peer_port: 12380}\n"
                    "wait: {timeout: 90, task_stall: 30, upload_stall: 20}\n")
    got = load_cluster_file(path, environ={})
    assert (got.name, got.count, got.vsphere.datacenter, got.vsphere.host) == ("lab", 5, "DC", "esx-2")
    assert (got.image.channel, got.image.version, got.image.allow_unsigned_version) == ("beta", "4593.2.5", True)
    assert (got.node.cpus, got.node.memory_mb, got.node.linked_clone) == (4, 4096, True)
    assert (got.etcd.bootstrap, got.etcd.discovery, got.etcd.client_port, got.etcd.peer_port, got.etcd.scheme) == (
        "discovery", "https://d.example/x", 12379, 12380, "http")
    assert (got.wait_timeout, got.task_stall, got.upload_stall) == (90, 30, 20)


def _loaded(tmp_path: Path, text: str, environ=None):
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return load_cluster_file(path, environ=environ or {})


def test_datastores_is_a_list_whose_first_is_the_datastore(tmp_path):
    target = _loaded(tmp_path, "cluster: lab\nvsphere:\n  datastores: [ds-a, 7]\n").vsphere
    assert target.datastores == ("ds-a", "7") and target.datastore == "ds-a"
    assert target.datastore_names == ("ds-a", "7")
    # The one-item form, and govc's variable, stay as they were.
    one = _loaded(tmp_path, "cluster: lab\nvsphere:\n  datastore: ds-a\n").vsphere
    assert one.datastores is None and one.datastore_names == ("ds-a",)
    govc = _loaded(tmp_path, "cluster: lab\n", {"GOVC_DATASTORE": "ds-g"}).vsphere
    assert govc.datastore_names == ("ds-g",)
    # datastores wins over GOVC_DATASTORE: the file names them.
    both = _loaded(tmp_path, "cluster: lab\nvsphere:\n  datastores: [ds-a, ds-b]\n", {"GOVC_DATASTORE": "ds-g"}).vsphere
    assert both.datastore_names == ("ds-a", "ds-b")


@pytest.mark.parametrize("text, finding", [
    ("vsphere:\n  datastore: a\n  datastores: [a, b]\n", "is set together with vsphere.datastore; keep one"),
    ("vsphere:\n  datastores: [a, a]\n", "names a datastore twice"),
    ("vsphere:\n  datastores: []\n", "at least 1 item"),
])
def test_datastores_mistakes_are_one_finding_on_the_key(tmp_path, text, finding):
    err = _refused(tmp_path, "cluster: lab\n" + text)
    assert finding in err.message + " ".join(err.findings)
    assert "datastores" in err.message + " ".join(err.findings)


def test_linked_clones_over_several_datastores_are_refused(tmp_path):
    err = _refused(tmp_path, "cluster: lab\nvsphere:\n  datastores: [a, b]\nnode:\n  linked_clone: true\n")
    assert err.message.startswith("node.linked_clone: true keeps every member's base disk on the template's datastore")
    _loaded(tmp_path, "cluster: lab\nvsphere:\n  datastores: [a]\nnode:\n  linked_clone: true\n")  # one is fine
