"""The bed's vCenter reached directly, for what a test stages or checks beside the tool: pyVmomi on the strict
simulator (its DC0 objects, clone and import specs, leases, NFC uploads with a pinned certificate) and a vmcoreos
session opened as a user would open one.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import ssl
import time

import pytest

from tests.harness.ova_builder import build_ovf_descriptor
from tests.harness.services import PASSWORD, USER, Vcsim
from vmcoreos.connection import connection_from
from vmcoreos.errors import ExitCode, VSphereError
from vmcoreos.images.archive.ova import OvaArchive
from vmcoreos.settings import VSphereTarget
from vmcoreos.vsphere import importer, targets
from vmcoreos.vsphere.session import connect
from vmcoreos.vsphere.waits import wait_task

MiB = 1 << 20


THUMBPRINT = re.compile(r"(?:[0-9A-F]{2}:){19}[0-9A-F]{2}")


def strict_pyvmomi_bed(workdir, **options):
    """A started strict Vcsim and a pyvmomi session on it, both ended after the module."""
    from pyVim.connect import Disconnect

    sim = Vcsim(workdir, strict=True, **options)
    try:
        sim.start()
        si = sim.connect()
        yield sim, si
        Disconnect(si)
    finally:
        sim.stop()


class BedInventory:
    """The strict bed's DC0 objects a direct test works with: its cluster, datastore, network, first host and VM."""

    def __init__(self, si):
        content = si.RetrieveContent()
        self.content = content
        self.dc = next(e for e in content.rootFolder.childEntity if e.name == "DC0")
        self.cluster = next(c for c in self.dc.hostFolder.childEntity if c.name == "DC0_C0")
        self.datastore = next(d for d in self.dc.datastore if d.name == "LocalDS_0")
        self.network = next(n for n in self.dc.network if n.name == "VM Network")
        self.host = self.cluster.host[0]
        self.vm = next(v for v in self.dc.vmFolder.childEntity if v.name == "DC0_C0_RP0_VM0")


def wait(task):
    """The task's result, once it ended."""
    from pyVim.task import WaitForTask

    WaitForTask(task)
    return task.info.result


def clone_spec(inv, host=True, **config):
    """A CloneSpec onto the bed's cluster and datastore (and first host unless host=False)."""
    from pyVmomi import vim

    location = vim.vm.RelocateSpec(pool=inv.cluster.resourcePool, datastore=inv.datastore,
                                   host=inv.host if host else None)
    return vim.vm.CloneSpec(location=location, config=vim.vm.ConfigSpec(**config) if config else None)


def import_spec(inv, name: str, memory_mb: int | None = None):
    """The import spec vCenter makes of a small Flatcar-like OVF for the bed's cluster."""
    from pyVmomi import vim

    ovf = build_ovf_descriptor(distro="flatcar", disk_size=4 * MiB, capacity_units="byte * 2^30")
    params = vim.OvfManager.CreateImportSpecParams(
        entityName=name, diskProvisioning="thin",
        networkMapping=[vim.OvfManager.NetworkMapping(name="VM Network", network=inv.network)])
    result = inv.content.ovfManager.CreateImportSpec(
        ovfDescriptor=ovf, resourcePool=inv.cluster.resourcePool, datastore=inv.datastore, cisp=params)
    assert not result.error, [e.localizedMessage for e in result.error]
    if memory_mb is not None:
        result.importSpec.configSpec.memoryMB = memory_mb
    return result.importSpec


def ready_lease(inv, name: str):
    """An import lease on the first host, waited on until ready."""
    lease = inv.cluster.resourcePool.ImportVApp(import_spec(inv, name), folder=inv.dc.vmFolder, host=inv.host)
    deadline = time.monotonic() + 10
    while lease.state == "initializing" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lease.state == "ready"
    return lease


def destroy(vm) -> None:
    wait(vm.Destroy_Task())


def put(url: str, data: bytes, context: ssl.SSLContext, pin: str | None = None) -> int:
    """PUT data to an NFC device URL; with pin, the peer's SHA-1 must be that thumbprint."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=10)
    try:
        conn.connect()
        if pin is not None:
            peer = hashlib.sha1(conn.sock.getpeercert(binary_form=True)).hexdigest().upper()
            assert ":".join(re.findall("..", peer)) == pin
        conn.request("PUT", parts.path, body=data, headers={"Content-Type": "application/x-vnd.vmware-streamVmdk"})
        return conn.getresponse().status
    finally:
        conn.close()


def pinned_context() -> ssl.SSLContext:
    # No CA: the pin below is the check, as govc does with deviceUrl[].sslThumbprint.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def session_on(sim: Vcsim, url: str | None = None, **trust):
    """A vmcoreos session as a user would open one: --ca-file by default, or thumbprint=/insecure=."""
    trust = trust or {"ca_file": sim.cert}
    conn = connection_from(url=url or sim.url, environ={"VMCOREOS_USERNAME": USER, "VMCOREOS_PASSWORD": PASSWORD}, **trust)
    return connect(conn)


def target(**fields) -> VSphereTarget:
    """The bed's DC0, DC0_C0 and LocalDS_0, with fields changed."""
    return VSphereTarget(**{"datacenter": "DC0", "cluster": "DC0_C0", "datastore": "LocalDS_0", **fields})


def import_refused(sim, ova, name, **trust) -> str:
    """The one-line error an import on sim fails with, through a session trusting vCenter as trust says."""
    s = session_on(sim, **trust)
    try:
        with pytest.raises(VSphereError) as raised:
            import_ova_and_destroy(s, ova, name)
    finally:
        s.close()
    assert "\n" not in raised.value.message
    return raised.value.message


def import_ova_and_destroy(session, ova, name, **kwargs):
    """Import ova as name through vmcoreos's importer (no retry may happen), then delete the VM."""
    placement = targets.locate(session, target())
    retries = []
    with OvaArchive(ova) as archive:
        try:
            vm = importer.import_ova(session, archive, placement, name, {}, on_retry=retries.append, **kwargs)
        finally:
            assert retries == []  # a TLS or placement failure is not a broken upload
    wait_task(session, vm.Destroy_Task())


def deploy_rv(cli, sim, tmp_path, ova):
    """`vmcoreos deploy` of a cluster named rv on sim, as a user runs it."""
    from tests.e2e.helpers import write_cluster

    cluster = write_cluster(tmp_path / "c.yaml", "127.0.0", name="rv")
    return cli(["deploy", "-c", str(cluster), "--ova", str(ova["ova"]), "--trusted-key", str(ova["key"])], env=sim.env())


def refused_before_upload(run, sim) -> str:
    """The run exited 2 with one line, before any import or upload, and left no VM of rv: that line."""
    from tests.e2e.helpers import inventory as vms_in

    assert run.returncode == ExitCode.USAGE, run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith("vmcoreos: error:") and "Traceback" not in run.stderr
    assert "importing" not in run.stderr and "uploading" not in run.stderr
    assert not [n for n, v in vms_in(sim).items() if v["extra"].get("vmcoreos.cluster") == "rv"]
    return lines[-1]
