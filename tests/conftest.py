"""Fixtures for the real test bed: vcsim, the guest simulator, signed OVAs, the CLI.

End-to-end tests run the installed `vmcoreos` as a subprocess, exactly as a
user would, and everything it prints is kept for the suite-wide secret scan.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.services import GuestSim, Vcsim, strict_profile

VMCOREOS = str(Path(sys.executable).with_name("vmcoreos"))
OUTPUT_LOG: list[str] = []  # everything the tool printed in this session
LOCK_DIRS: set[Path] = set()  # every VMCOREOS_LOCK_DIR a run under test had
LOCKED_IN: set[Path] = set()  # the lock dirs of deploys that succeeded (each took its host lock there)
# Locks and the image cache of runs under test live in the session's temp dir, never the user's.
_STATE = Path(tempfile.mkdtemp(prefix="vmcoreos-test-state-"))


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
    (_STATE / "tmp").mkdir(parents=True, exist_ok=True)
    full_env.update(VMCOREOS_LOCK_DIR=str(_STATE / "locks"), VMCOREOS_CACHE_DIR=str(_STATE / "cache"),
                    TMPDIR=str(_STATE / "tmp"))
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


# The bed's fixtures: a test that uses one needs build/vcsim, the guest simulator, real etcd or
# Debian's gnupg/gpgv, so it is e2e and `make test-unit` (venv only) leaves it out.
E2E_FIXTURES = {"vcsim", "shared_vcsim", "guestsim", "strict_vcsim", "strict_guestsim", "signer", "signed_ova", "big_ova"}


def pytest_collection_modifyitems(config, items):
    e2e = Path(__file__).parent / "e2e"
    for item in items:
        if e2e in item.path.parents or E2E_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def cli():
    return run_vmcoreos


def _running_vcsim(workdir: Path):
    # The strict bed (a real vCenter's behaviour, services.Vcsim) unless VMCOREOS_TEST_PROFILE=lenient.
    sim = Vcsim(workdir, strict=strict_profile())
    try:
        yield sim.start()
    finally:
        sim.stop()


@pytest.fixture
def vcsim(tmp_path):
    yield from _running_vcsim(tmp_path / "vcsim")


@pytest.fixture
def strict_vcsim(tmp_path):
    """The strict bed whatever VMCOREOS_TEST_PROFILE says, DRS on (so the host is vCenter's choice)."""
    with strict_bed(tmp_path / "strict-vcsim") as sim:
        yield sim


@contextlib.contextmanager
def strict_bed(workdir: Path, **options):
    """A running strict simulator with DRS on (and Vcsim's other options), stopped after. Its env() trusts
    a bundle of the vCenter's and the NFC host's certificates, as a user whose CA signed both."""
    sim = Vcsim(workdir, strict=True, drs=True, **options)
    try:
        sim.start()
        bundle = sim.workdir / "ca-bundle.pem"
        bundle.write_text(sim.cert.read_text() + sim.nfc_cert.read_text())
        sim.env = lambda: {**Vcsim.env(sim), "VMCOREOS_CA_FILE": str(bundle)}
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def strict_guestsim(strict_vcsim, tmp_path, subnet):
    """Guest tools as real VMware Tools report them: fe80:: first, docker0 and flannel in guest.net."""
    yield from strict_guests(strict_vcsim, tmp_path / "strict-guestsim", subnet)


def strict_guests(vcsim: Vcsim, workdir: Path, subnet: str):
    """strict_guestsim's guest simulator on any strict Vcsim (one of strict_bed's), stopped when the generator ends."""
    sim = GuestSim(vcsim, workdir, dhcp_range=f"{subnet}.100-{subnet}.199", strict=True)
    try:
        yield sim.start()
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def shared_vcsim(tmp_path_factory):
    """One simulator for a whole module. A module whose tests change nothing they would see from
    each other (no test counts VMs or templates another made; each uses its own cluster name)
    overrides `vcsim` with it and saves a simulator start per test."""
    yield from _running_vcsim(tmp_path_factory.mktemp("vcsim"))


_subnets = itertools.count(1)
# Two suites on one machine (two checkouts) must not share addresses either: each picks its own base.
_SUBNET_BASE = int(os.environ.get("VMCOREOS_TEST_SUBNET_BASE", "10"))


@pytest.fixture
def subnet():
    """A fresh 127.x.y.0/24 per test, so etcd members of different tests never share an address."""
    n = next(_subnets)
    return f"127.{_SUBNET_BASE + n // 250}.{n % 250}"


@pytest.fixture
def guestsim(vcsim, tmp_path, subnet):
    sim = GuestSim(vcsim, tmp_path / "guestsim", dhcp_range=f"{subnet}.100-{subnet}.199", strict=vcsim.strict)
    try:
        yield sim.start()
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def signer(tmp_path_factory):
    from tests.harness.signing import TestSigner

    s = TestSigner.create(tmp_path_factory.mktemp("signer"))
    try:
        yield s
    finally:
        s.close()


def signed_image(directory: Path, signer, **build) -> dict:
    """A Flatcar-like OVA in directory, its .sig and the throwaway public key that signed it."""
    from tests.harness.ova_builder import build_ova

    ova = build_ova(directory / "flatcar_production_vmware_ova.ova", **build)
    sig = directory / (ova.name + ".sig")
    signer.sign_detached(ova, sig)
    return {"ova": ova, "sig": sig, "key": signer.write_public_key(directory / "test-key.asc")}


@pytest.fixture(scope="session")
def signed_ova(tmp_path_factory, signer):
    return signed_image(tmp_path_factory.mktemp("ova"), signer, disk_bytes=4 << 20)


@pytest.fixture(scope="session")
def big_ova(tmp_path_factory, signer):
    """An OVA large enough that its upload can be cut in the middle (16 MiB disk)."""
    return signed_image(tmp_path_factory.mktemp("big-ova"), signer, disk_bytes=16 << 20, seed=3)


_LEAKS = pytest.StashKey[list]()  # what pytest_sessionfinish found, for the terminal summary


def pytest_sessionfinish(session, exitstatus):
    """Fail the session if what it ran printed a secret or left a process, temp file or held lock.

    A hook, not a last test: it runs after any selection (one test or all) and checks what
    those tests did, not what a full run in collection order would have done.
    """
    import psutil

    from tests.harness.leaks import find_leaks

    try:
        problems = find_leaks(outputs=OUTPUT_LOG, parent=psutil.Process(), state=_STATE,
                              lock_dirs=LOCK_DIRS | {_STATE / "locks"}, locked_in=LOCKED_IN)
    finally:
        shutil.rmtree(_STATE, ignore_errors=True)
    session.config.stash[_LEAKS] = problems
    if problems and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    problems = config.stash.get(_LEAKS, [])
    if problems:
        terminalreporter.section("left behind by this session", red=True)
        for problem in problems:
            terminalreporter.write_line(problem)
