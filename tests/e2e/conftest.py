"""The bed's fixtures: vcsim, the guest simulator, real etcd addresses, signed OVAs, the fault proxy.

Only tests under tests/e2e/ see them (and the root conftest marks every test here e2e); the
pieces themselves are in tests/harness/bed.py and tests/harness/services.py.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass

import pytest
import requests

from tests.e2e.helpers import FCOS_VERSION
from tests.harness.bed import next_subnet, running_vcsim, signed_image, strict_bed, strict_guests
from tests.harness.faultproxy import FaultProxy
from tests.harness.runner import run_vmcoreos
from tests.harness.services import GuestSim, Vcsim, free_port, strict_profile


@pytest.fixture
def cli():
    """The installed `vmcoreos`, a subprocess, exactly as a user runs it."""
    return run_vmcoreos


@pytest.fixture
def vcsim(tmp_path):
    yield from running_vcsim(tmp_path / "vcsim")


@pytest.fixture(scope="module")
def shared_vcsim(tmp_path_factory):
    """One simulator for a whole module. A module whose tests change nothing they would see from
    each other (no test counts VMs or templates another made; each uses its own cluster name)
    overrides `vcsim` with it and saves a simulator start per test."""
    yield from running_vcsim(tmp_path_factory.mktemp("vcsim"))


@pytest.fixture
def strict_vcsim(tmp_path):
    """The strict bed whatever VMCOREOS_TEST_PROFILE says, DRS on (so the host is vCenter's choice)."""
    with strict_bed(tmp_path / "strict-vcsim") as sim:
        yield sim


@pytest.fixture
def strict_guestsim(strict_vcsim, tmp_path, subnet):
    """Guest tools as real VMware Tools report them: fe80:: first, docker0 and flannel in guest.net."""
    yield from strict_guests(strict_vcsim, tmp_path / "strict-guestsim", subnet)


@pytest.fixture
def subnet():
    """A fresh 127.x.y.0/24 per test, so etcd members of different tests never share an address."""
    return next_subnet()


@pytest.fixture
def guestsim(vcsim, tmp_path, subnet):
    sim = GuestSim(vcsim, tmp_path / "guestsim", dhcp_range=f"{subnet}.100-{subnet}.199", strict=vcsim.strict)
    try:
        yield sim.start()
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def big_ova(tmp_path_factory, signer):
    """An OVA large enough that its upload can be cut in the middle (16 MiB disk)."""
    return signed_image(tmp_path_factory.mktemp("big-ova"), signer, disk_bytes=16 << 20, seed=3)


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


@pytest.fixture
def discovery_etcd(tmp_path, subnet):
    """A real etcd serving the v2 keys API (Debian's etcd 3.4 needs --enable-v2) as the discovery service.

    On an address of the test's own subnet, as the nodes are: a port free_port() found on 127.0.0.1 can be
    taken by an outgoing connection's ephemeral port before etcd binds it ("address already in use").
    """
    host = f"{subnet}.240"
    port, peer = 2379, 2380
    url = f"http://{host}:{port}"
    log = open(tmp_path / "discovery-etcd.log", "wb")
    proc = subprocess.Popen(
        ["/usr/bin/etcd", "--name", "discovery", "--data-dir", str(tmp_path / "discovery.etcd"),
         "--enable-v2=true", "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", f"http://{host}:{peer}", "--initial-advertise-peer-urls",
         f"http://{host}:{peer}", "--initial-cluster", f"discovery=http://{host}:{peer}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(url + "/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "discovery etcd did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp_path / "discovery.etcd", ignore_errors=True)


@pytest.fixture
def env(vcsim, tmp_path):
    """The vCenter's settings, with a lock and cache directory of the test's own."""
    return {**vcsim.env(), "VMCOREOS_LOCK_DIR": str(tmp_path / "locks"), "VMCOREOS_CACHE_DIR": str(tmp_path / "cache")}


@pytest.fixture
def fcos_stream(tmp_path, signer):
    """The stable stream naming one FCOS build, signed by the test key (standing in for Fedora 43's)."""
    from tests.harness.release_server import ReleaseServer, ReleaseTree

    tree = ReleaseTree(tmp_path / "srv", signer)
    with ReleaseServer(tree.root) as server:
        tree.publish_fcos("stable", FCOS_VERSION, server.url, disk_bytes=2 << 20)
        yield server
