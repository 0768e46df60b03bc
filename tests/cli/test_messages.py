"""The messages a new user met, each naming the problem and the fix, and the output scripts read."""

from __future__ import annotations

import gzip
import base64
import json

import pytest
import yaml
from typer.testing import CliRunner

from tests.harness.runner import invoke_vmcoreos
from vmcoreos.cli.app import app
from vmcoreos.cli.terminal import Terminal

UNREACHABLE = {"VMCOREOS_URL": "https://127.0.0.1:1/sdk", "VMCOREOS_USERNAME": "u", "VMCOREOS_PASSWORD": "pw"}


@pytest.fixture
def cluster_file(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({"cluster": "lab", "count": 1, "node": {"network": {"mode": "dhcp"}}}))
    return path


def one_line(run, code: int, *needles: str) -> str:
    assert run.returncode == code, run.output
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.output, run.stderr
    for needle in needles:
        assert needle in run.stderr
    return run.stderr


# -- the password file ----------------------------------------------------------------------


def _status_with_password_file(cluster_file, path):
    env = {**UNREACHABLE, "VMCOREOS_PASSWORD": ""}
    return invoke_vmcoreos(["status", "-c", str(cluster_file), "--password-file", str(path)], env=env)


def test_a_directory_as_password_file_is_not_a_file_not_a_chmod(cluster_file, tmp_path):
    # It advised `chmod 600 /tmp`.
    line = one_line(_status_with_password_file(cluster_file, tmp_path), 2, f"--password-file {tmp_path} is not a file")
    assert "chmod" not in line


def test_a_password_file_that_is_not_utf8_is_exit_2_naming_the_flag(cluster_file, tmp_path):
    # It was "unexpected UnicodeDecodeError ... report the traceback", exit 1.
    path = tmp_path / "pw"
    path.write_bytes(b"\xff\xfepw\n")
    path.chmod(0o600)
    line = one_line(_status_with_password_file(cluster_file, path), 2, f"--password-file {path} is not UTF-8")
    assert "unexpected" not in line


def test_an_empty_password_file_is_refused(cluster_file, tmp_path):
    # It was accepted, and vCenter refused an empty password later.
    path = tmp_path / "pw"
    path.write_text("\n")
    path.chmod(0o600)
    one_line(_status_with_password_file(cluster_file, path), 2, f"--password-file {path} is empty")


# -- the lock directory ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_a_lock_dir_that_cannot_hold_locks_is_exit_2_naming_the_variable(cluster_file, tmp_path, where):
    # It was "unexpected FileNotFoundError" (or NotADirectoryError), exit 1, naming no variable.
    plain = tmp_path / "plain"
    plain.write_text("")
    lock_dir = plain if where == "file" else plain / "locks"
    run = invoke_vmcoreos(["deploy", "-c", str(cluster_file), "--ova", str(tmp_path / "x.ova")],
                       env={**UNREACHABLE, "VMCOREOS_LOCK_DIR": str(lock_dir)})
    one_line(run, 2, f"VMCOREOS_LOCK_DIR={lock_dir} cannot hold lock files", "point VMCOREOS_LOCK_DIR at")


# -- fetch, the cluster file, encode, rebuild ----------------------------------------------------------


def test_fetch_says_an_unknown_distro_before_asking_for_a_key(tmp_path):
    run = invoke_vmcoreos(["fetch", "--distro", "ubuntu", "--cache-dir", str(tmp_path / "c")])
    line = one_line(run, 2, "distro 'ubuntu' is not one of flatcar")
    assert "--trusted-key" not in line


def test_an_empty_cluster_file_is_named(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    one_line(invoke_vmcoreos(["render", "-c", str(path)]), 2, f"cluster file {path} is empty")


def test_encode_dash_reads_stdin():
    run = invoke_vmcoreos(["encode", "-"], input="#cloud-config\nhostname: a\n")
    assert run.returncode == 0, run.output
    assert gzip.decompress(base64.b64decode(run.stdout.strip())) == b"#cloud-config\nhostname: a\n"


@pytest.mark.parametrize("command,codes", [
    ("encode", "Exit codes: 0 done, 2 bad usage or config."),
    ("render", "Exit codes: 0 done, 1 --discovery-etcd could not mint a token, 2 bad usage or config."),
    ("status", "Exit codes: 0 every node healthy, 1 a node is missing, down or unhealthy, 2 bad usage or config,"
               " 6 status unknown (vCenter or etcd could not be asked), 7 degraded placement (healthy, but members"
               " share a host or datastore a free one could take)."),
])
def test_help_lists_only_the_exit_codes_a_command_returns(command, codes):
    result = CliRunner().invoke(app, [command, "--help"], terminal_width=400)
    assert codes in " ".join(result.stdout.split())


def test_rebuild_insecure_skip_verify_does_not_suggest_insecure(cluster_file):
    run = invoke_vmcoreos(["rebuild", "-c", str(cluster_file), "--insecure-skip-verify"], env=UNREACHABLE)
    line = one_line(run, 2, "rebuild has no --insecure-skip-verify", "always verifies the image")
    assert "Did you mean" not in run.output and "Usage" not in run.output
    assert "--insecure-skip-verify" not in CliRunner().invoke(app, ["rebuild", "--help"]).stdout
    assert line.startswith("vmcoreos: error: ")


# -- output for machines --------------------------------------------------------------------------------


def test_version_and_completion():
    run = invoke_vmcoreos(["--version"])
    assert run.returncode == 0 and run.stdout.startswith("vmcoreos ") and run.stdout.count("\n") == 1
    assert "--show-completion" in invoke_vmcoreos(["--help"]).stdout


def test_status_that_cannot_reach_vcenter_is_unknown_6_with_a_json_error(cluster_file):
    run = invoke_vmcoreos(["status", "-c", str(cluster_file), "--json"], env=UNREACHABLE)
    assert run.returncode == 6, run.output
    doc = json.loads(run.stdout)
    assert doc["schema"] == 1 and doc["error"]["exit_code"] == 6
    assert doc["error"]["message"].startswith("status unknown: cannot reach vCenter at 127.0.0.1:1")
    assert run.stderr == f"vmcoreos: error: {doc['error']['message']}\n"


def test_a_json_failure_is_an_error_object_and_nothing_else_on_stdout(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    run = invoke_vmcoreos(["render", "-c", str(path), "--json"])
    assert run.returncode == 2
    assert json.loads(run.stdout) == {"schema": 1, "error": {"message": f"cluster file {path} is empty;"
                                                                        " start from the example `vmcoreos init` writes",
                                                             "exit_code": 2}}


def test_every_json_result_carries_schema_1(cluster_file):
    run = invoke_vmcoreos(["render", "-c", str(cluster_file), "--json"])
    assert run.returncode == 0, run.output
    doc = json.loads(run.stdout)
    assert doc["schema"] == 1 and [n["name"] for n in doc["nodes"]] == ["lab-01"]


def test_a_table_off_a_terminal_is_never_cut(capfd, monkeypatch):
    # With COLUMNS=80 (cron, | grep, CI logs) rich cut IPs and member ids to "10.0.0.…".
    monkeypatch.setenv("COLUMNS", "80")
    rows = [[f"lab-0{i}", "poweredOn", f"fd00:1234:5678:9abc:def0:1234:5678:9a{i:02x}", "8e9e05c52164694d" + "0" * i,
             "healthy", "*" if i == 1 else "", "current"] for i in range(1, 4)]
    Terminal().table(["NODE", "POWER", "IP", "ETCD MEMBER", "HEALTH", "LEADER", "CONFIG"], rows)
    lines = capfd.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[0].split() == ["NODE", "POWER", "IP", "ETCD", "MEMBER", "HEALTH", "LEADER", "CONFIG"]
    for line, row in zip(lines[1:], rows):
        assert [c for c in row if c] == line.split()
        assert "…" not in line


def test_a_ca_file_that_is_a_directory_is_not_a_file_naming_where_it_came_from(cluster_file, tmp_path):
    # It said "CA file /tmp does not exist".
    flag = invoke_vmcoreos(["status", "-c", str(cluster_file), "--ca-file", str(tmp_path)], env=UNREACHABLE)
    one_line(flag, 2, f"CA file {tmp_path} (--ca-file) is not a file")
    env = invoke_vmcoreos(["status", "-c", str(cluster_file)], env={**UNREACHABLE, "VMCOREOS_CA_FILE": str(tmp_path / "no")})
    one_line(env, 2, f"CA file {tmp_path / 'no'} (VMCOREOS_CA_FILE or GOVC_TLS_CA_CERTS) does not exist")


def test_a_held_lock_is_still_exit_5_not_an_unusable_lock_dir(tmp_path, monkeypatch):
    # filelock's Timeout is an OSError: caught as one, a held lock read "cannot hold lock files: None" (exit 2).
    import filelock

    from vmcoreos import hostlock
    from vmcoreos.errors import LockedError

    monkeypatch.setenv("VMCOREOS_LOCK_DIR", str(tmp_path))
    held = filelock.FileLock(str(tmp_path / "lab.lock"))
    with held:
        with pytest.raises(LockedError, match="another vmcoreos run holds the lock for cluster 'lab'"):
            with hostlock.host_lock("lab"):
                pass
