"""The test OVAs' descriptors imported into the simulator (build/vcsim) with pyvmomi's
OvfManager.CreateImportSpec: vCenter accepts what tests/harness/ova_builder.py writes."""

from __future__ import annotations

import ssl
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.harness.ova_layouts import HARDWARE
from tests.harness.ova_builder import DISTROS, MiB, PROFILES, build_ovf_descriptor

REPO = Path(__file__).resolve().parents[2]
VCSIM = REPO / "build" / "vcsim"


@pytest.fixture(scope="module")
def vcsim_endpoint(tmp_path_factory):
    """build/vcsim on a free port for this module (self-contained; not conftest's per-test vcsim)."""
    d = tmp_path_factory.mktemp("vcsim")
    info, cert = d / "info", d / "cert.pem"
    log = open(d / "vcsim.log", "wb")
    proc = subprocess.Popen(
        [str(VCSIM), "-listen", "127.0.0.1:0", "-cert-out", str(cert), "-info-out", str(info)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while not info.exists():
            assert proc.poll() is None, (d / "vcsim.log").read_text()
            assert time.monotonic() < deadline, "vcsim did not start"
            time.sleep(0.05)
        fields = dict(line.split("=", 1) for line in info.read_text().splitlines() if "=" in line)
        yield urlparse(fields["url"]), cert
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def vsphere(vcsim_endpoint):
    from pyVim.connect import Disconnect, SmartConnect

    url, cert = vcsim_endpoint
    si = SmartConnect(
        host=url.hostname, port=url.port, user="user", pwd="pass", sslContext=ssl.create_default_context(cafile=cert)
    )
    yield si
    Disconnect(si)


@pytest.mark.parametrize(
    "distro,units", [(d, "byte") for d in DISTROS] + [("flatcar", "byte * 2^30"), ("fedora-coreos", "byte * 2^20")]
)
def test_create_import_spec_in_vcsim(vsphere, distro, units):
    from pyVmomi import vim

    content = vsphere.RetrieveContent()
    dc = next(e for e in content.rootFolder.childEntity if e.name == "DC0")
    cluster = next(c for c in dc.hostFolder.childEntity if c.name == "DC0_C0")
    datastore = next(d for d in dc.datastore if d.name == "LocalDS_0")
    network = next(n for n in dc.network if n.name == "VM Network")
    p = PROFILES[distro]
    ovf = build_ovf_descriptor(distro=distro, disk_size=7 * MiB, capacity_units=units)
    params = vim.OvfManager.CreateImportSpecParams(
        entityName=f"t-{distro}",
        networkMapping=[vim.OvfManager.NetworkMapping(name="VM Network", network=network)],
    )
    result = content.ovfManager.CreateImportSpec(
        ovfDescriptor=ovf, resourcePool=cluster.resourcePool, datastore=datastore, cisp=params
    )
    assert not result.error, [e.localizedMessage for e in result.error]
    assert not result.warning, [w.localizedMessage for w in result.warning]
    spec = result.importSpec.configSpec
    os_type, vmx, memory, _, _ = HARDWARE[distro]
    assert (spec.guestId, spec.version, spec.numCPUs, spec.memoryMB) == (os_type, vmx, 2, memory)
    devices = [c.device for c in spec.deviceChange]
    kinds = {type(dev).__name__.rsplit(".", 1)[-1] for dev in devices}
    assert {"ParaVirtualSCSIController", "VirtualDisk", "VirtualVmxnet3"} <= kinds
    disk = next(dev for dev in devices if isinstance(dev, vim.vm.device.VirtualDisk))
    assert disk.capacityInKB * 1024 == p.capacity_bytes
    nic = next(dev for dev in devices if isinstance(dev, vim.vm.device.VirtualVmxnet3))
    assert nic.backing.deviceName == "VM Network"
    assert [(f.path, f.size) for f in result.fileItem] == [(p.disk_name, 7 * MiB)]
