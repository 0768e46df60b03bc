"""The session-finish checks (tests/harness/leaks.py) find what they are there to find."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import filelock
import psutil
import pytest

from tests.harness import leaks
from tests.harness.services import MARKER, PASSWORD

ROOT = Path(__file__).resolve().parents[1]


def test_a_printed_password_or_marker_is_found():
    assert leaks.secrets_printed(["clean", "also clean"]) == []
    assert len(leaks.secrets_printed(["clean", f"url=https://u:{PASSWORD}@vc", f"key {MARKER}"])) == 2


def test_a_running_child_is_found_and_a_finished_one_is_not():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert [p for p in leaks.processes_left(psutil.Process()) if str(child.pid) in p]
    finally:
        child.kill()
        child.wait()
    assert not [p for p in leaks.processes_left(psutil.Process()) if str(child.pid) in p]


def test_temp_files_and_partial_downloads_are_found(tmp_path):
    assert leaks.temp_files_left(tmp_path) == []
    (tmp_path / "tmp").mkdir()
    assert leaks.temp_files_left(tmp_path) == []
    (tmp_path / "tmp" / "gpgv-keyring-x").mkdir()
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "image.ova.part").write_bytes(b"x")
    assert len(leaks.temp_files_left(tmp_path)) == 2


def test_a_held_lock_is_found_and_a_released_one_is_not(tmp_path):
    path = tmp_path / "lab.lock"
    held = filelock.FileLock(str(path), timeout=0)
    with held:  # a second FileLock is a second open file: flock refuses it, as it would another run
        assert leaks.locks_held([tmp_path], [tmp_path]) == [f"lock still held: {path}"]
    assert leaks.locks_held([tmp_path], [tmp_path]) == []


def test_a_deploy_that_locked_somewhere_else_is_found(tmp_path):
    # No lock directory at all is what a run that ignored VMCOREOS_LOCK_DIR leaves.
    missing = tmp_path / "locks"
    assert len(leaks.locks_held([missing], [missing])) == 1
    assert leaks.locks_held([missing], []) == []


@pytest.mark.parametrize("spread", [[], ["-n", "1"]], ids=["one-process", "xdist-worker"])
def test_the_session_fails_when_a_test_leaked(spread):
    # The planted test itself passes; only the session-finish hook can turn the run red. Under xdist
    # the leak is a worker's, and only the controller's exit status counts.
    env = dict(os.environ)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *spread,
                          "tests/harness/planted_leak.py::test_planted_leak"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout + run.stderr
    assert "1 passed" in run.stdout and "left behind by this session" in run.stdout
    assert "printed a secret" in run.stdout and PASSWORD not in run.stdout + run.stderr
