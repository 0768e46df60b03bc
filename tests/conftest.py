"""What every test may use: the CLI runner, a test signing key, the e2e marker by folder, the
session-wide leak check and the unit suite's CPU budget.

The bed's fixtures (vcsim, guestsim, the big OVA, subnets, the fault proxy) live in
tests/e2e/conftest.py, so only tests under tests/e2e/ can use them, and every test there is marked
e2e; `make test-unit` runs everything else (which may call Debian's command-line checkers: gnupg,
gpgv, sqv, ignition-validate, systemd-analyze, never the simulator, the guest simulator, etcd or
the release server). End-to-end tests run the installed `vmcoreos` as a
subprocess, exactly as a user would (tests/harness/runner.py), and everything it prints is kept
for the secret scan below.
"""

from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path

import pytest

from tests.harness.bed import signed_image
from tests.harness.runner import LOCK_DIRS, LOCKED_IN, OUTPUT_LOG, STATE, run_vmcoreos

E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def cli():
    return run_vmcoreos


@pytest.fixture(scope="session")
def signer(tmp_path_factory):
    """A throwaway OpenPGP key (Debian's gnupg makes it) for the verification tests here and the bed's OVAs."""
    from tests.harness.signing import TestSigner

    s = TestSigner.create(tmp_path_factory.mktemp("signer"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def signed_ova(tmp_path_factory, signer):
    """A small signed Flatcar-like OVA (4 MiB disk), its .sig and key: no simulator needed to read it."""
    return signed_image(tmp_path_factory.mktemp("ova"), signer, disk_bytes=4 << 20)


_LEAKS = pytest.StashKey[list]()  # what pytest_sessionfinish found, for the terminal summary
_COST = pytest.StashKey[str]()  # the unit suite's wall and CPU time, for the terminal summary
# `make test-unit` must stay quick. Measured in CPU seconds (this process and every child it waited
# for: the CLI runs, gpgv, sqv), which a busy shared machine does not inflate the way it does wall
# time; on an idle 2-core machine the suite's wall time is about its CPU time.
UNIT_CPU_BUDGET = 60.0
_STARTED = time.monotonic()


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _whole_unit_suite(config) -> bool:
    """`make test-unit`: -m "not e2e" over the whole of tests/ (not a file or test picked out)."""
    args = [Path(a).resolve() for a in config.args]
    return config.option.markexpr == "not e2e" and args in ([], [Path(__file__).parent])


def pytest_sessionfinish(session, exitstatus):
    """Fail the session if what it ran printed a secret or left a process, temp file or held lock,
    or if it was the whole unit suite and went over its CPU budget.

    A hook, not a last test: it runs after any selection (one test or all) and checks what
    those tests did, not what a full run in collection order would have done.
    """
    import psutil

    from tests.harness.leaks import find_leaks

    try:
        problems = find_leaks(outputs=OUTPUT_LOG, parent=psutil.Process(), state=STATE,
                              lock_dirs=LOCK_DIRS | {STATE / "locks"}, locked_in=LOCKED_IN)
    finally:
        shutil.rmtree(STATE, ignore_errors=True)
    if _whole_unit_suite(session.config):
        cpu, wall = _cpu_seconds(), time.monotonic() - _STARTED
        session.config.stash[_COST] = f"the unit suite took {wall:.0f} s, {cpu:.0f} s of CPU (budget {UNIT_CPU_BUDGET:.0f} s)"
        if cpu > UNIT_CPU_BUDGET:
            problems.append(f"the unit suite used {cpu:.0f} s of CPU, over its {UNIT_CPU_BUDGET:.0f} s budget;"
                            " make the slow tests cheaper (--durations=20 names them) or move bed work to tests/e2e/")
    session.config.stash[_LEAKS] = problems
    if problems and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if cost := config.stash.get(_COST, ""):
        terminalreporter.write_line(cost)
    problems = config.stash.get(_LEAKS, [])
    if problems:
        terminalreporter.section("left behind by this session", red=True)
        for problem in problems:
            terminalreporter.write_line(problem)
