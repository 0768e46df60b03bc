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


def run_vmcoreos(args: list[str], *, env: dict | None = None, cwd: Path | None = None, timeout: float = 300,
                 input: str | None = None) -> Run:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))}
    # The tool's temp files go to a directory of this session's, so the final check sees only ours.
    (STATE / "tmp").mkdir(parents=True, exist_ok=True)
    full_env.update(VMCOREOS_LOCK_DIR=str(STATE / "locks"), VMCOREOS_CACHE_DIR=str(STATE / "cache"),
                    TMPDIR=str(STATE / "tmp"))
    full_env.update(env or {})
    proc = subprocess.run(
        [VMCOREOS, *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout, input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    OUTPUT_LOG.append(proc.stdout + proc.stderr)
    LOCK_DIRS.add(Path(full_env["VMCOREOS_LOCK_DIR"]))
    # A dry run takes no lock: it changes nothing, so it may look while another run works.
    if args[:1] == ["deploy"] and proc.returncode == 0 and not {"--help", "--dry-run"} & set(args):
        LOCKED_IN.add(Path(full_env["VMCOREOS_LOCK_DIR"]))
    return Run(args, proc.returncode, proc.stdout, proc.stderr)
