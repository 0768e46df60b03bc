"""The connection options, declared once: the same six on every command that reaches vCenter, env vars shown."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from vmcoreos.cli.app import app
from vmcoreos.environment import ENV_CA_FILE, ENV_PASSWORD, ENV_THUMBPRINT, ENV_URL, ENV_USERNAME

COMMANDS = ["deploy", "status", "rebuild", "destroy"]
FLAGS = ["--url", "--username", "--password-file", "--insecure", "--ca-file", "--thumbprint"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_vcenter_command_has_the_six_options_with_their_env_vars(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())  # help wraps at the terminal's width
    for flag in FLAGS:
        assert f" {flag} " in text
    for names in (ENV_URL, ENV_USERNAME, ENV_PASSWORD, ENV_CA_FILE, ENV_THUMBPRINT):
        assert f"[env var: {', '.join(names)}]" in text


@pytest.fixture
def cluster_file(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump({"cluster": "lab", "count": 1}))
    return path


def test_a_password_in_the_url_flag_is_refused(cluster_file):
    result = CliRunner().invoke(app, ["status", "-c", str(cluster_file), "--url", "https://u:secret@127.0.0.1:1/sdk"],
                                env={"VMCOREOS_URL": None, "GOVC_URL": None})
    assert result.exit_code == 2
    assert "--url carries a password" in result.stderr
    assert "secret" not in result.output


def test_a_url_from_the_environment_keeps_its_govc_meaning(cluster_file, tmp_path):
    # GOVC_URL may carry user:password (govc's own convention); only a flag's value is on the process list.
    env = {"GOVC_URL": "https://u:secret@127.0.0.1:1/sdk", "VMCOREOS_URL": None, "VMCOREOS_USERNAME": None,
           "VMCOREOS_PASSWORD": None, "GOVC_USERNAME": None, "GOVC_PASSWORD": None,
           "VMCOREOS_LOCK_DIR": str(tmp_path / "locks")}
    result = CliRunner().invoke(app, ["status", "-c", str(cluster_file)], env=env)
    assert "--url carries a password" not in result.stderr
    assert "no vCenter credentials" not in result.stderr
    assert result.exit_code == 6, result.stderr  # refused at connect (nothing listens on port 1): status unknown
    assert "secret" not in result.output
