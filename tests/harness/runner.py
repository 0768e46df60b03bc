"""Running the installed `vmcoreos` as a user would, and what the session remembers of those runs.

Every run's output is kept (OUTPUT_LOG) for the session-wide secret scan, and every lock
directory a run had (LOCK_DIRS, LOCKED_IN) for the held-lock check (tests/harness/leaks.py,
called from the root conftest at session finish). Locks, the image cache and temp files of
runs under test live in STATE, the session's own temp dir, never the user's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

VMCOREOS = str(Path(sys.executable).with_name("vmcoreos"))
OUTPUT_LOG: list[str] = []  # everything the tool printed in this session
LOCK_DIRS: set[Path] = set()  # every VMCOREOS_LOCK_DIR a run under test had
LOCKED_IN: set[Path] = set()  # the lock dirs of deploys that succeeded (each took its host lock there)
STATE = Path(tempfile.mkdtemp(prefix="vmcoreos-test-state-"))


@dataclass
class Run:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _environment(env: dict | None) -> dict[str, str]:
    """The caller's environment without anybody's vCenter settings, the session's own state dirs, then env."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))}
    # The tool's temp files go to a directory of this session's, so the final check sees only ours.
    (STATE / "tmp").mkdir(parents=True, exist_ok=True)
    full_env.update(VMCOREOS_LOCK_DIR=str(STATE / "locks"), VMCOREOS_CACHE_DIR=str(STATE / "cache"),
                    TMPDIR=str(STATE / "tmp"))
    full_env.update(env or {})
    return full_env


def _remember(args: list[str], run: Run, env: dict[str, str]) -> Run:
    OUTPUT_LOG.append(run.stdout + run.stderr)
    LOCK_DIRS.add(Path(env["VMCOREOS_LOCK_DIR"]))
    # A dry run takes no lock: it changes nothing, so it may look while another run works.
    if args[:1] == ["deploy"] and run.returncode == 0 and not {"--help", "--dry-run"} & set(args):
        LOCKED_IN.add(Path(env["VMCOREOS_LOCK_DIR"]))
    return run


def invoke_vmcoreos(args: list[str], *, env: dict | None = None, cwd: Path | None = None,
                    input: str | None = None) -> Run:
    """The CLI run in this process (typer's runner), for what a unit test checks of it: exit code, stdout,
    stderr. A tenth of a subprocess's cost; e2e tests and anything about the process itself (start-up
    imports, signals, -v's patching of pyVmomi, core dumps, stdin left open) use run_vmcoreos.
    The same environment as run_vmcoreos (tempfile's directory too), and an unexpected exception
    ends as it would in the installed tool: exit 1 with the traceback on stderr."""
    from typer.testing import CliRunner

    from vmcoreos.cli.app import app, one_line_usage_errors

    one_line_usage_errors()
    full_env = _environment(env)
    unset = {k: None for k in os.environ if k not in full_env}
    previous_cwd, previous_tempdir = Path.cwd(), tempfile.tempdir
    tempfile.tempdir = full_env["TMPDIR"]
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(app, args, env={**unset, **full_env}, input=input, prog_name="vmcoreos")
    finally:
        os.chdir(previous_cwd)
        tempfile.tempdir = previous_tempdir
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return _remember(args, Run(args, result.exit_code, result.stdout, stderr), full_env)


def run_vmcoreos(args: list[str], *, env: dict | None = None, cwd: Path | None = None, timeout: float = 300,
                 input: str | None = None) -> Run:
    full_env = _environment(env)
    proc = subprocess.run(
        [VMCOREOS, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout, input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    return _remember(args, Run(args, proc.returncode, proc.stdout, proc.stderr), full_env)
