"""What the suite checks when it finishes: nothing printed a secret, nothing was left behind.

tests/conftest.py calls find_leaks from pytest_sessionfinish, so the checks run
after whatever tests were selected (one or all) and see exactly what those
tests did; tests/test_leak_checks.py shows each check failing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import filelock
import psutil

from tests.harness.services import MARKER, PASSWORD

SECRETS = (PASSWORD, MARKER)


def secrets_printed(outputs: Iterable[str]) -> list[str]:
    return [f"run {i} printed a secret (the vCenter password or a node config's private key)"
            for i, out in enumerate(outputs) if any(s in out for s in SECRETS)]


def processes_left(parent: psutil.Process, ignore_pids: Iterable[int] = ()) -> list[str]:
    """Children of parent still running, but for ignore_pids (finished xdist workers on their way out)."""
    left = []
    for p in parent.children(recursive=True):
        if p.pid in ignore_pids:
            continue
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"process {p.pid} still running: {' '.join(p.cmdline())}")
        except psutil.NoSuchProcess:
            pass
    return left


def temp_files_left(state: Path) -> list[str]:
    tmp = state / "tmp"
    left = sorted(tmp.iterdir()) if tmp.exists() else []
    left += sorted(state.rglob("*.part"))
    return [f"temp file left: {p}" for p in left]


def locks_held(lock_dirs: Iterable[Path], locked_in: Iterable[Path]) -> list[str]:
    """Every lock file in lock_dirs can be taken now; every dir in locked_in (where a deploy
    that succeeded had to take its host lock) holds at least one lock file, so a run that
    locked somewhere else (the user's own state dir) is caught, not silently passed."""
    problems = []
    for directory in sorted(set(locked_in)):
        if not list(directory.glob("*.lock")):
            problems.append(f"a deploy succeeded with VMCOREOS_LOCK_DIR={directory}, but no lock file is there")
    for directory in sorted(set(lock_dirs)):
        for path in sorted(directory.glob("*.lock")):
            lock = filelock.FileLock(str(path), timeout=0)
            try:
                lock.acquire()
            except filelock.Timeout:
                problems.append(f"lock still held: {path}")
            else:
                lock.release()
    return problems


def find_leaks(*, outputs: Iterable[str], parent: psutil.Process, state: Path, lock_dirs: Iterable[Path],
               locked_in: Iterable[Path], ignore_pids: Iterable[int] = ()) -> list[str]:
    return [*secrets_printed(outputs), *processes_left(parent, set(ignore_pids)), *temp_files_left(state),
            *locks_held(lock_dirs, locked_in)]
