"""The README's system-wide install, run as written, gives the command the shipped crontab and units run;
a cron-style run of that command leaves a metrics file node_exporter's textfile collector reads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import textfile

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
BINARY = "/usr/local/bin/vmcoreos"
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
# cron's own environment for a job (Debian cron: SHELL, PATH, HOME and LOGNAME, nothing else).
CRON_ENV = {"SHELL": "/bin/sh", "PATH": "/usr/bin:/bin", "LOGNAME": "vmcoreos"}

pytestmark = pytest.mark.e2e  # a pip install from the package index: not for `make test-unit`


def _system_wide_steps() -> list[str]:
    """The README's commands for the system-wide command, in order, as a person would paste them."""
    text = (ROOT / "README.md").read_text()
    at = text.index("To install it system-wide")
    block = re.search(r"```sh\n(.*?)```", text[at:], re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def _cron_job(text: str) -> tuple[str, str]:
    (job,) = [line.split(None, 6) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return job[5], job[6]


def _checkout(where: Path) -> Path:
    """A copy of the checkout's files, as a user's clone holds them (no .venv, no build/)."""
    src = where / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    for name in files:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    return src


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The README's steps run in a copy of the checkout, with /opt and /usr/local/bin under a temp dir."""
    tmp = tmp_path_factory.mktemp("install")
    src, bindir = _checkout(tmp), tmp / "bin"
    bindir.mkdir()
    steps = _system_wide_steps()
    assert any("pip install" in s for s in steps) and any(BINARY in s for s in steps), steps
    for step in steps:
        assert step.startswith("sudo "), step
        command = step.removeprefix("sudo ").replace("/opt/vmcoreos", str(tmp / "opt")).replace("/usr/local/bin", str(bindir))
        proc = subprocess.run(["sh", "-c", command], cwd=src, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{step}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return tmp, bindir / "vmcoreos"


def test_the_readme_pipx_line_works_in_the_checkout(tmp_path):
    # It said `pipx install ./vmcoreos`, which fails in the checkout: ./vmcoreos is the package, not the project.
    text = (ROOT / "README.md").read_text()
    (line,) = [line for line in text.splitlines() if line.startswith("pipx install")]
    command = line.split("#")[0].strip()
    assert command == "pipx install ."
    if not shutil.which("pipx"):
        pytest.fail("pipx is missing; run `make apt` (Debian package pipx)")
    env = {**os.environ, "PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin")}
    proc = subprocess.run(["sh", "-c", command], cwd=_checkout(tmp_path), env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    version = subprocess.run([str(tmp_path / "bin" / "vmcoreos"), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("vmcoreos "), version.stderr


def test_the_readme_install_lands_the_command_the_units_run(installed):
    tmp, command = installed
    version = subprocess.run([str(command), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("vmcoreos "), version.stderr
    unit_dir = tmp / "units"
    unit_dir.mkdir()
    for suffix in ("service", "timer"):
        name = f"vmcoreos-rebuild.{suffix}"
        text = (CONFIGS / name).read_text()
        if suffix == "service":
            assert f"ExecStart={BINARY} " in text
        (unit_dir / name).write_text(text.replace(BINARY, str(command)))
    proc = subprocess.run(["systemd-analyze", "verify", "vmcoreos-rebuild.timer", "vmcoreos-rebuild.service"],
                          capture_output=True, text=True, timeout=60, cwd=unit_dir)
    assert proc.returncode == 0, proc.stderr
    assert "vmcoreos-rebuild" not in proc.stderr, proc.stderr
    # The same unit without the command in place fails: verify does check it.
    (unit_dir / "vmcoreos-rebuild.service").write_text((CONFIGS / "vmcoreos-rebuild.service").read_text()
                                                       .replace(BINARY, str(tmp / "nowhere" / "vmcoreos")))
    missing = subprocess.run(["systemd-analyze", "verify", "vmcoreos-rebuild.service"], capture_output=True,
                             text=True, timeout=60, cwd=unit_dir)
    assert missing.returncode != 0 and "nowhere/vmcoreos" in missing.stderr


def test_a_cron_run_leaves_metrics_the_textfile_collector_reads(installed):
    tmp, command = installed
    etc, log, collected = tmp / "etc", tmp / "log", tmp / "textfile"
    for d in (etc, log, collected):
        d.mkdir()
    env_file = (CONFIGS / "vmcoreos.env").read_text()
    env_file = re.sub(r"(?m)^VMCOREOS_URL=.*$", "VMCOREOS_URL=https://127.0.0.1:1/sdk", env_file)
    env_file = env_file.replace("/var/lib/vmcoreos", str(tmp / "state")).replace("/var/cache/vmcoreos", str(tmp / "cache"))
    (etc / "env").write_text(env_file)
    (etc / "password").write_text("pw\n")
    for name in ("env", "password"):
        os.chmod(etc / name, 0o640)  # root:<our group> 640, as docs/operations.md installs them
    (etc / "lab.yaml").write_text("cluster: lab\ncount: 1\n")

    user, line = _cron_job((CONFIGS / "crontab").read_text())
    assert user == "vmcoreos" and f"--metrics-file {TEXTFILE_DIR}/vmcoreos.prom" in line
    for old, new in {BINARY: str(command), "/etc/vmcoreos": str(etc), "/var/log/vmcoreos": str(log),
                     TEXTFILE_DIR: str(collected)}.items():
        line = line.replace(old, new)
    env = {**CRON_ENV, "HOME": str(tmp)}
    proc = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()), "sh", "-c", line],
                          capture_output=True, text=True, timeout=120)
    # Nothing listens on port 1: the run fails, says so in the log, and the metrics record the failure.
    assert proc.returncode == 1, proc.stderr
    assert "cannot reach vCenter at 127.0.0.1:1" in (log / "rebuild.log").read_text()
    prom = collected / "vmcoreos.prom"
    assert oct(prom.stat().st_mode & 0o777) == "0o644"  # node_exporter runs as its own user
    assert sorted(p.name for p in collected.iterdir()) == [".vmcoreos.prom.lock", "vmcoreos.prom"]  # no temp file left

    exposition = textfile.scrape(collected)
    assert textfile.scrape_error(exposition) == 0
    got = textfile.samples(exposition, "vmcoreos_")
    labels = frozenset({("command", "rebuild"), ("cluster", "lab")})
    assert got[("vmcoreos_last_run_exit_code", labels)] == 1
    assert got[("vmcoreos_last_run_nodes_replaced", labels)] == 0
    assert got[("vmcoreos_last_failure_timestamp_seconds", labels)] == got[("vmcoreos_last_run_timestamp_seconds", labels)]
    assert ("vmcoreos_last_success_timestamp_seconds", labels) not in got
    assert 0 <= got[("vmcoreos_last_run_duration_seconds", labels)] < 120

