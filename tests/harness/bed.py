"""The bed's pieces as context managers and helpers: a strict simulator, its guest simulator,
signed images. tests/e2e/conftest.py makes fixtures of them; a test that needs two beds at once
(tests/e2e/test_vsphere_lock.py, test_deadlines.py) calls them directly.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path
from typing import Iterator

from tests.harness.services import GuestSim, Vcsim, strict_profile

# Two suites on one machine (two checkouts) must not share addresses either: each picks its own base.
# Under pytest-xdist each worker (gw0, gw1, ...) takes the next 20 of 127.x, 5,000 subnets each.
SUBNET_BASE = int(os.environ.get("VMCOREOS_TEST_SUBNET_BASE", "10")) + 20 * int(
    os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_subnets = itertools.count(1)


def next_subnet() -> str:
    """A fresh 127.x.y per call, so etcd members of different tests never share an address."""
    n = next(_subnets)
    return f"127.{SUBNET_BASE + n // 250}.{n % 250}"


def running_vcsim(workdir: Path) -> Iterator[Vcsim]:
    """The profile's simulator, started, stopped when the generator ends. The strict bed (a real
    vCenter's behaviour, services.Vcsim) unless VMCOREOS_TEST_PROFILE=lenient."""
    sim = Vcsim(workdir, strict=strict_profile())
    try:
        yield sim.start()
    finally:
        sim.stop()


@contextlib.contextmanager
def strict_bed(workdir: Path, **options) -> Iterator[Vcsim]:
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


def strict_guests(vcsim: Vcsim, workdir: Path, subnet: str) -> Iterator[GuestSim]:
    """Guest tools as real VMware Tools report them (fe80:: first, docker0 and flannel in guest.net) on
    any strict Vcsim (one of strict_bed's), stopped when the generator ends."""
    sim = GuestSim(vcsim, workdir, dhcp_range=f"{subnet}.100-{subnet}.199", strict=True)
    try:
        yield sim.start()
    finally:
        sim.stop()


def signed_image(directory: Path, signer, **build) -> dict:
    """A Flatcar-like OVA in directory, its .sig and the throwaway public key that signed it."""
    from tests.harness.ova_builder import build_ova

    ova = build_ova(directory / "flatcar_production_vmware_ova.ova", **build)
    sig = directory / (ova.name + ".sig")
    signer.sign_detached(ova, sig)
    return {"ova": ova, "sig": sig, "key": signer.write_public_key(directory / "test-key.asc")}
