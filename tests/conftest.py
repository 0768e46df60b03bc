"""What every test may use: the CLI runner, a test signing key, the e2e marker by folder, the
session-wide leak check and the unit suite's CPU budget, all of which also hold when pytest-xdist
spreads the tests over worker processes (`make test` and `make test-unit` run with -n).

The bed's fixtures (vcsim, guestsim, the big OVA, subnets, the fault proxy) live in
tests/e2e/conftest.py, so only tests under tests/e2e/ can use them, and every test there is marked
e2e; `make test-unit` runs everything else (which may call Debian's command-line checkers: gnupg,
gpgv, sqv, ignition-validate, systemd-analyze, never the simulator, the guest simulator, etcd or
the release server). Unit tests run the CLI in-process (the `cli` fixture) unless the process is
the point; end-to-end tests run the installed `vmcoreos` as a subprocess, exactly as a user would
(tests/harness/runner.py); everything either prints is kept for the secret scan below.
"""

from __future__ import annotations

import os
import resource
import shutil
import time
from pathlib import Path

import pytest

from tests.harness.bed import signed_image
from tests.harness.runner import LOCK_DIRS, LOCKED_IN, OUTPUT_LOG, STATE, invoke_vmcoreos

E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)
    # Longest first: xdist hands out tests in this order, and a test of minutes handed out last would
    # leave the other workers idle at the end while it runs alone.
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.fixture
def cli():
    """The CLI in this process (tests/e2e/conftest.py overrides it with the installed tool, a subprocess)."""
    return invoke_vmcoreos


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
_WORKERS = pytest.StashKey[list]()  # under xdist, what each worker reported when it finished
# `make test-unit` must stay quick. Measured in CPU seconds (this process, every xdist worker and
# every child they waited for: the CLI runs, gpgv, sqv), which a busy shared machine does not inflate
# the way it does wall time; spread over the 2 cores by xdist, the wall time is about half of it.
UNIT_CPU_BUDGET = 60.0
_STARTED = time.monotonic()


def _cpu_seconds(*, children: bool = True) -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    spent = own.ru_utime + own.ru_stime
    if children:
        waited = resource.getrusage(resource.RUSAGE_CHILDREN)
        spent += waited.ru_utime + waited.ru_stime
    return spent


def _whole_unit_suite(config) -> bool:
    """`make test-unit`: -m "not e2e" over the whole of tests/ (not a file or test picked out)."""
    args = [Path(a).resolve() for a in config.args]
    return config.option.markexpr == "not e2e" and args in ([], [Path(__file__).parent])


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """The controller's side of xdist: keep what a finished worker found (its leaks, its CPU, its pid)."""
    node.config.stash.setdefault(_WORKERS, []).append(getattr(node, "workeroutput", {}))


def pytest_sessionfinish(session, exitstatus):
    """Fail the session if what it ran printed a secret or left a process, temp file or held lock,
    or if it was the whole unit suite and went over its CPU budget.

    A hook, not a last test: it runs after any selection (one test or all) and checks what
    those tests did, not what a full run in collection order would have done. Under xdist each
    worker checks its own runs (a process a worker leaked is its child, and would be nobody's once
    the worker exits) and hands the findings to the controller, which alone decides the exit status.
    """
    import psutil

    from tests.harness.leaks import find_leaks

    config = session.config
    workers = config.stash.get(_WORKERS, [])
    try:
        problems = find_leaks(outputs=OUTPUT_LOG, parent=psutil.Process(), state=STATE,
                              lock_dirs=LOCK_DIRS | {STATE / "locks"}, locked_in=LOCKED_IN,
                              ignore_pids={w["pid"] for w in workers if "pid" in w})
    finally:
        shutil.rmtree(STATE, ignore_errors=True)
    if _is_worker(config):
        config.workeroutput.update(pid=os.getpid(), problems=problems, cpu=_cpu_seconds())
        return
    for worker in workers:
        problems += worker.get("problems", [])
    if _whole_unit_suite(config):
        # A worker's CPU is counted by the worker, not through RUSAGE_CHILDREN here, so none twice.
        cpu = _cpu_seconds(children=not workers) + sum(w.get("cpu", 0.0) for w in workers)
        wall = time.monotonic() - _STARTED
        config.stash[_COST] = f"the unit suite took {wall:.0f} s, {cpu:.0f} s of CPU (budget {UNIT_CPU_BUDGET:.0f} s)"
        if cpu > UNIT_CPU_BUDGET:
            problems.append(f"the unit suite used {cpu:.0f} s of CPU, over its {UNIT_CPU_BUDGET:.0f} s budget;"
                            " make the slow tests cheaper (--durations=20 names them) or move bed work to tests/e2e/")
    config.stash[_LEAKS] = problems
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
