"""Fixtures of the end-to-end suite only."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.harness.faultproxy import FaultProxy
from tests.harness.services import Vcsim, free_port, strict_profile


@dataclass
class Uploads:
    vcsim: Vcsim
    proxy: FaultProxy  # every NFC upload of a run started with env passes it
    env: dict[str, str]  # what points vmcoreos at the vCenter


@pytest.fixture
def uploads(tmp_path):
    """The profile's simulator with a FaultProxy on the upload's way (a plain relay until a test arms a fault).

    Lenient: in front of vCenter, whose leases name `*`, the host the tool connected to, so the proxy.
    Strict: as on a real vCenter the disk goes to the "ESXi host" the lease names, not to vCenter; its
    leases name the proxy, which relays to the NFC listener, and the tool talks to vCenter directly.
    """
    if not strict_profile():
        sim = Vcsim(tmp_path / "vcsim")
        try:
            sim.start()
            with FaultProxy.for_url(sim.url) as proxy:
                yield Uploads(sim, proxy, {**sim.env(), "VMCOREOS_URL": proxy.url_for(sim.url)})
        finally:
            sim.stop()
        return
    sim = Vcsim(tmp_path / "vcsim", strict=True, nfc_advertise=f"127.0.0.1:{free_port()}")
    try:
        sim.start()
        host, port = sim.nfc_host.rsplit(":", 1)
        upstream, upstream_port = sim.nfc_listen.rsplit(":", 1)
        with FaultProxy(upstream=(upstream, int(upstream_port)), listen=(host, int(port))) as proxy:
            yield Uploads(sim, proxy, sim.env())
    finally:
        sim.stop()
