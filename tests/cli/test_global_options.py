"""Global options where people type them (before or after the command), and the cluster file found without -c."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.harness.runner import invoke_vmcoreos, run_vmcoreos

# Nothing listens on port 1: a status that got as far as connecting exits 6 (unknown).
UNREACHABLE = {"VMCOREOS_URL": "https://127.0.0.1:1/sdk", "VMCOREOS_USERNAME": "u", "VMCOREOS_PASSWORD": "pw"}
REACHED_VCENTER = 6


def invoke(args, cwd=None, env=UNREACHABLE):
    """In this process: a subprocess per case made the suite slow. -v stays out: it patches pyVmomi
    for the whole process, so the -v cases run the installed tool."""
    return invoke_vmcoreos(args, env=env, cwd=cwd)


@pytest.fixture
def lab(tmp_path):
    """A directory holding cluster.yaml, as `vmcoreos init lab` makes it."""
    directory = tmp_path / "lab"
    directory.mkdir()
    (directory / "cluster.yaml").write_text(yaml.safe_dump({"cluster": "lab", "count": 1}))
    return directory


@pytest.mark.parametrize("args", [["status", "-v"], ["-v", "status"]])
def test_verbose_works_before_and_after_the_command(lab, args):
    run = run_vmcoreos(args, env=UNREACHABLE, cwd=lab)
    assert "No such option" not in run.stderr
    assert run.returncode == REACHED_VCENTER, run.output


@pytest.mark.parametrize("args", [
    ["-q", "status"], ["status", "-q"], ["--json", "status"], ["-q", "deploy", "--ova", "x.ova"],
    ["status", "--metrics-file", "m.prom"], ["--metrics-file", "m.prom", "status"],
])
def test_global_options_work_before_and_after_the_command(lab, monkeypatch, args):
    run = invoke(args, cwd=lab)
    assert "No such option" not in run.stderr
    assert run.returncode in (1, REACHED_VCENTER) and "cannot reach vCenter at 127.0.0.1:1" in run.stderr, run.output
    if "--metrics-file" in args:
        assert 'vmcoreos_last_run_exit_code{command="status",cluster="lab"} 6' in (lab / "m.prom").read_text()


def test_json_before_the_command_makes_stdout_json(lab):
    run = invoke(["--json", "status"], cwd=lab)
    doc = json.loads(run.stdout)
    assert doc["schema"] == 1 and doc["error"]["exit_code"] == REACHED_VCENTER


@pytest.mark.parametrize("where", ["before", "after"])
def test_connection_options_work_before_and_after_the_command(lab, monkeypatch, where):
    # A password in --url is refused: that refusal proves the value reached the connection.
    url = ["--url", "https://u:secret@127.0.0.1:1/sdk"]
    args = [*url, "status"] if where == "before" else ["status", *url]
    run = invoke(args, cwd=lab, env={})
    assert run.returncode == 2 and "--url carries a password" in run.stderr, run.output
    assert "secret" not in run.output


def test_the_command_s_connection_option_wins_over_the_root_s(lab):
    run = invoke(["--url", "https://u:secret@127.0.0.1:1/sdk", "status", "--url", "https://127.0.0.1:1/sdk"], cwd=lab)
    assert run.returncode == REACHED_VCENTER, run.output


def test_json_before_a_command_without_json_is_one_line(tmp_path):
    run = invoke_vmcoreos(["--json", "init", str(tmp_path / "x")])
    assert run.returncode == 2 and run.stderr == "vmcoreos: error: init has no --json; see 'vmcoreos init --help'\n"
    assert not (tmp_path / "x").exists()


def test_status_beside_a_cluster_file_needs_no_c(lab):
    assert invoke(["status"], cwd=lab).returncode == REACHED_VCENTER


def test_c_may_name_the_directory_init_made(lab):
    assert invoke(["status", "-c", str(lab)]).returncode == REACHED_VCENTER


def test_the_config_variable_names_the_cluster_file(lab, tmp_path):
    run = invoke(["status"], cwd=tmp_path, env={**UNREACHABLE, "VMCOREOS_CONFIG": str(lab / "cluster.yaml")})
    assert run.returncode == REACHED_VCENTER, run.output
    # -c wins over the variable.
    run = invoke(["render", "-c", str(lab)], env={"VMCOREOS_CONFIG": str(tmp_path / "none.yaml")})
    assert run.returncode == 0, run.output


def test_no_cluster_file_anywhere_is_one_line_naming_the_three_ways(tmp_path):
    run = invoke_vmcoreos(["status"], env=UNREACHABLE, cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.output
    for words in ("no ./cluster.yaml", "pass -c FILE", "VMCOREOS_CONFIG"):
        assert words in run.stderr


def test_a_directory_without_a_cluster_file_says_so(tmp_path):
    run = invoke_vmcoreos(["render", "-c", str(tmp_path)])
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.output
    assert f"{tmp_path} is a directory without a cluster.yaml" in run.stderr
    assert "is a directory." not in run.stderr  # click's old "file 'lab' is a directory"


def test_convert_needs_no_to(tmp_path):
    source = tmp_path / "old.yaml"
    source.write_text("#cloud-config\ncoreos:\n  etcd2:\n    name: node1\n")
    run = invoke(["convert", str(source)])
    assert run.returncode == 0, run.output
    assert "etcd-member" in run.stdout
    refused = invoke(["convert", str(source), "--to", "coreos"])
    assert refused.returncode == 2 and "use --to flatcar" in refused.stderr
