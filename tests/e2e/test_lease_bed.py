"""The lease keepalive on the strict bed: a lease that fails without progress survives one failed
progress call (its units are tests/vsphere/test_lease.py)."""

import time

from tests.harness.faultproxy import FaultProxy
from tests.harness.services import PASSWORD, USER, Vcsim, free_port
from vmcoreos.connection import connection_from
from vmcoreos.errors import VSphereError
from vmcoreos.images.archive.ova import OvaArchive
from vmcoreos.settings import VSphereTarget
from vmcoreos.vsphere import importer, targets
from vmcoreos.vsphere import lease as lease_mod
from vmcoreos.vsphere.session import connect
from vmcoreos.vsphere.waits import wait_task


def test_a_failed_progress_call_does_not_lose_the_lease_on_the_strict_bed(tmp_path, big_ova, monkeypatch):
    # Leases there fail after LEASE_TIMEOUT s without progress, as on vCenter after 300 s; the upload is
    # throttled to last several times that, so only a keepalive that outlives the failed call gets it through.
    LEASE_TIMEOUT = 3
    monkeypatch.setattr(lease_mod, "LEASE_TICK", 0.5)
    nfc = f"127.0.0.1:{free_port()}"
    sim = Vcsim(tmp_path / "vcsim", strict=True, drs=True, lease_timeout=LEASE_TIMEOUT, nfc_advertise=nfc).start()
    try:
        host, port = sim.nfc_listen.rsplit(":", 1)
        with FaultProxy((host, int(port)), ("127.0.0.1", int(nfc.rsplit(":", 1)[1]))) as proxy:
            proxy.throttle(2 << 20, direction="up")  # 16 MiB at 2 MiB/s: 8 s
            s = connect(connection_from(url=sim.url, ca_file=sim.cert,
                                        environ={"VMCOREOS_USERNAME": USER, "VMCOREOS_PASSWORD": PASSWORD}))
            try:
                stub = s.si._stub
                guarded, failed = stub.InvokeMethod, []

                def one_progress_fails(mo, info, args, outerStub=None):
                    if info.wsdlName == "HttpNfcLeaseProgress" and not failed:
                        failed.append(args)
                        raise VSphereError("the connection to vCenter kept dropping during HttpNfcLeaseProgress")
                    return guarded(mo, info, args, outerStub)

                monkeypatch.setattr(stub, "InvokeMethod", one_progress_fails)
                placement = targets.locate(s, VSphereTarget(datacenter="DC0", cluster="DC0_C0", datastore="LocalDS_0"))
                retries = []
                started = time.monotonic()
                with OvaArchive(big_ova["ova"]) as archive:
                    vm = importer.import_ova(s, archive, placement, "keepalive-flaky", {}, on_retry=retries.append)
                took = time.monotonic() - started
                wait_task(s, vm.Destroy_Task())
            finally:
                s.close()
            uploaded = proxy.stats.bytes_up
    finally:
        sim.stop()
    assert failed and retries == []  # one failed progress call, and the upload did not start over
    assert took > 2 * LEASE_TIMEOUT and uploaded < 2 * (16 << 20)
