"""The examples as they will run: the crontab line under cron's bare environment,
the systemd units through systemd-analyze, and every example config the package
ships through the tool's own validation."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

import pytest

from vmcoreos import examples
from vmcoreos.connection import read_password_file
from vmcoreos.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
EXAMPLES = files("vmcoreos.examples")
# A password that sh or systemd would mangle if it ever passed through either's unquoting.
PASSWORD = "s3cr'et $HOME \"x\" \\n"
BINARY = "/usr/local/bin/vmcoreos"
# cron's own environment for a job (Debian cron: SHELL, PATH, HOME and LOGNAME, nothing else).
CRON_ENV = {"SHELL": "/bin/sh", "PATH": "/usr/bin:/bin", "LOGNAME": "vmcoreos"}


def _stub(path: Path, out: Path) -> Path:
    """A fake vmcoreos that records the environment and arguments it was started with."""
    path.write_text(f'#!/bin/sh\n/usr/bin/env > "{out}/env"\nprintf "%s\\n" "$@" > "{out}/args"\n')
    path.chmod(0o755)
    return path


def _cron_job(text: str) -> tuple[dict[str, str], str, str]:
    """(environment lines, user, command) of the one job in an /etc/cron.d file."""
    env, jobs = {}, []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", line):
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
        else:
            jobs.append(line.split(None, 6))
    assert len(jobs) == 1, f"expected one cron job, found {len(jobs)}"
    fields = jobs[0]
    return env, fields[5], fields[6]


@pytest.fixture
def installed(tmp_path):
    """configs/ as the install comments lay it out, under tmp_path instead of /etc and /var."""
    etc, log, out = tmp_path / "etc", tmp_path / "log", tmp_path / "out"
    for d in (etc, log, out):
        d.mkdir()
    shutil.copy(CONFIGS / "vmcoreos.env", etc / "env")
    (etc / "password").write_text(PASSWORD + "\n")
    for name in ("env", "password"):
        (etc / name).chmod(0o400)
    binary = _stub(tmp_path / "vmcoreos", out)
    paths = {BINARY: str(binary), "/etc/vmcoreos": str(etc), "/var/log/vmcoreos": str(log)}
    return tmp_path, paths


def _substitute(text: str, paths: dict[str, str]) -> str:
    for old, new in paths.items():
        text = text.replace(old, new)
    return text


def _env_file() -> dict[str, str]:
    lines = (CONFIGS / "vmcoreos.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_crontab_line_hands_the_credentials_to_vmcoreos(installed):
    tmp, paths = installed
    cron_env, user, command = _cron_job((CONFIGS / "crontab").read_text())
    env = {**CRON_ENV, "HOME": str(tmp), **cron_env}
    proc = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()), "sh", "-c", _substitute(command, paths)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    seen = dict(line.split("=", 1) for line in (tmp / "out" / "env").read_text().splitlines() if "=" in line)
    for key, value in _env_file().items():
        assert seen.get(key) == value, f"{key} from the env file did not reach vmcoreos"
    assert not any(k.endswith("PASSWORD") for k in seen), "the password must not travel in the environment"
    args = (tmp / "out" / "args").read_text().splitlines()
    assert args[:3] == ["rebuild", "-c", str(tmp / "etc" / "lab.yaml")]
    password_file = Path(args[args.index("--password-file") + 1])
    # The tool's own reader accepts the file as installed (mode 400) and reads the password unmangled.
    assert read_password_file(password_file) == PASSWORD
    assert (tmp / "log" / "rebuild.log").exists(), "stderr should go to the log the comments name"
    assert user == "vmcoreos", "the nightly job should run as the dedicated user, not root"
    assert "%" not in command, "cron turns % in a command into a newline"


def _unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture
def units(tmp_path):
    """The two units with ExecStart's binary pointed at a stub: verify checks that it exists."""
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is missing; run `make apt` (Debian package systemd)")
    binary = _stub(tmp_path / "vmcoreos", tmp_path)
    for suffix in ("service", "timer"):
        name = f"vmcoreos-rebuild.{suffix}"
        (tmp_path / name).write_text((CONFIGS / name).read_text().replace(BINARY, str(binary)))
    return tmp_path / "vmcoreos-rebuild.service", tmp_path / "vmcoreos-rebuild.timer"


def test_units_pass_systemd_analyze_verify(units):
    service, timer = units
    proc = subprocess.run(["systemd-analyze", "verify", str(timer), str(service)],
                          capture_output=True, text=True, timeout=60, cwd=service.parent)
    assert proc.returncode == 0, proc.stderr
    assert "vmcoreos-rebuild" not in proc.stderr, proc.stderr


def test_service_is_hardened(units):
    service, _ = units
    # Exposure is scored 0-100 (shown as 0.0-10.0); the unhardened root unit scored 96.
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(service)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-400:] + proc.stderr
    settings = _unit_settings(service.read_text())
    for key, value in {"User": "vmcoreos", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes", "StateDirectory": "vmcoreos",
                       "CacheDirectory": "vmcoreos", "EnvironmentFile": "/etc/vmcoreos/env"}.items():
        assert settings.get(key) == [value], f"{key}={settings.get(key)}"
    credential, source = settings["LoadCredential"][0].split(":", 1)
    assert source == "/etc/vmcoreos/password"
    assert f"--password-file %d/{credential}" in settings["ExecStart"][0]


def test_cron_and_timer_share_the_lock_and_cache_dirs():
    """Runs from cron and from the timer on one host must see each other's host lock."""
    unit = dict(item.split("=", 1) for item in _unit_settings(
        (CONFIGS / "vmcoreos-rebuild.service").read_text())["Environment"][0].split())
    expand = {"%S": "/var/lib", "%C": "/var/cache"}
    env_file = _env_file()
    for key in ("VMCOREOS_LOCK_DIR", "VMCOREOS_CACHE_DIR"):
        assert _substitute(unit[key], expand) == env_file[key]


def test_every_configs_path_a_message_names_is_shipped():
    """pip users have no checkout: each configs/ file a message points at must be in the package."""
    # init's node.yaml is configs/flatcar-etcd-member.yaml with more comments.
    shipped_as = {"flatcar-etcd-member.yaml": "node.yaml"}
    named = set()
    for source in (ROOT / "vmcoreos").rglob("*.py"):
        named.update(re.findall(r"configs/([\w.-]+\.(?:yaml|json))", source.read_text()))
    for name in sorted(named):
        target = shipped_as.get(name, name)
        assert EXAMPLES.joinpath(target).is_file(), f"configs/{name} is named in a message but not shipped as {target}"
        assert Path(examples.path(target)).is_file()


def test_shipped_copies_match_the_repository():
    for name in ("flatcar-ignition.json",):
        assert EXAMPLES.joinpath(name).read_text() == (CONFIGS / name).read_text(), f"{name} drifted from configs/"


# cluster.schema.json is the cluster file's editor schema (tests/test_clusterfile.py), not a node config.
NODE_CONFIGS = sorted(p.name for p in EXAMPLES.iterdir() if p.name.endswith((".yaml", ".json"))
                      and p.name not in ("cluster.yaml", "cluster.schema.json"))


@pytest.mark.parametrize("node_config", NODE_CONFIGS)
def test_every_shipped_example_renders(cli, tmp_path, node_config):
    """The shipped cluster file with each shipped node config passes `vmcoreos render`, the tool's own checks."""
    cluster = EXAMPLES.joinpath("cluster.yaml").read_text()
    assert "  config: node.yaml\n" in cluster
    (tmp_path / "cluster.yaml").write_text(cluster.replace("  config: node.yaml\n", f"  config: {node_config}\n"))
    (tmp_path / node_config).write_text(EXAMPLES.joinpath(node_config).read_text())
    run = cli(["render", "-c", str(tmp_path / "cluster.yaml")])
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("=== lab-01 "), run.stdout[:200]
    assert run.stderr == ""


def test_a_stuck_nightly_run_is_ended_by_the_unit_and_by_cron():
    settings = _unit_settings((CONFIGS / "vmcoreos-rebuild.service").read_text())
    # A oneshot's run is bounded by TimeoutStartSec= (systemd ignores RuntimeMaxSec= there).
    assert settings["TimeoutStartSec"] == ["7h"] and settings["Type"] == ["oneshot"]
    _, _, command = _cron_job((CONFIGS / "crontab").read_text())
    assert "exec timeout -k 150 7h /usr/local/bin/vmcoreos rebuild" in command


def test_the_fcos_example_renders_etcd_as_a_podman_unit(cli):
    run = cli(["render", "-c", str(CONFIGS / "fcos-cluster.yaml"), "--node", "fcos-02", "--json"])
    assert run.returncode == 0, run.stderr
    assert "/usr/bin/podman run --name etcd-member" in run.stdout and "10.0.0.32" in run.stdout
