"""Runs last: nothing the suite did printed a secret or left a process, temp file or held lock behind."""

from __future__ import annotations

import filelock
import psutil

from tests.conftest import _STATE, OUTPUT_LOG
from tests.e2e.test_secrets import MARKER
from tests.harness.services import PASSWORD


def test_no_secret_in_anything_vmcoreos_printed(request):
    if request.session.testscollected > 100:  # the whole suite, not this file alone
        assert len(OUTPUT_LOG) > 20
    leaks = [out for out in OUTPUT_LOG if PASSWORD in out or MARKER in out]
    assert leaks == []


def test_no_process_left_running():
    children = psutil.Process().children(recursive=True)
    assert [" ".join(p.cmdline()) for p in children if p.is_running()] == []


def test_no_temp_files_left():
    # Every vmcoreos the suite ran had TMPDIR here: gpgv keyrings, downloads in progress, …
    tmp = _STATE / "tmp"
    assert (sorted(p.name for p in tmp.glob("*")) if tmp.exists() else []) == []
    assert list(_STATE.rglob("*.part")) == []


def test_no_lock_left_held():
    for path in (_STATE / "locks").glob("*.lock"):
        lock = filelock.FileLock(str(path), timeout=0)
        lock.acquire()  # raises Timeout if some run still held it
        lock.release()
