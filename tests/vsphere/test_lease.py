"""The lease keepalive reports the one byte counter the upload advances, and stops when asked."""

import threading
import time

import pytest
from pyVmomi import vim

from tests.harness.faultproxy import FaultProxy
from tests.harness.services import PASSWORD, USER, Vcsim, free_port
from vmcoreos.connection import connection_from
from vmcoreos.errors import VSphereError
from vmcoreos.images.ova import OvaArchive
from vmcoreos.settings import VSphereTarget
from vmcoreos.vsphere import importer, inventory
from vmcoreos.vsphere import lease as lease_mod
from vmcoreos.vsphere.lease import ByteCounter, LeaseKeepalive, abort
from vmcoreos.vsphere.session import connect
from vmcoreos.vsphere.waits import wait_task


class Lease:
    def __init__(self):
        self.reports, self.aborted = [], False
        self.reported = threading.Event()

    def HttpNfcLeaseProgress(self, percent):
        self.reports.append(percent)
        self.reported.set()

    def HttpNfcLeaseAbort(self):
        self.aborted = True


def test_the_keepalive_reports_the_counter_the_display_reads():
    shown = []
    counter = ByteCounter(200, lambda done, total: shown.append((done, total)))
    lease = Lease()
    with LeaseKeepalive(lease, counter, tick=0.01) as keepalive:
        assert lease.reported.wait(5)  # a 0 % report renews the lease too
        lease.reported.clear()
        counter.add(100)
        assert lease.reported.wait(5)
    assert not keepalive._thread.is_alive()
    assert lease.reports[0] == 0 and 50 in lease.reports and shown == [(100, 200)]
    counter.add(100)
    assert counter.percent == 99  # 100 % is said by the import itself, after the last check


def test_abort_tolerates_a_lease_that_is_gone():
    class Gone:
        def HttpNfcLeaseAbort(self):
            raise RuntimeError("lease already released")

    abort(Gone())
    lease = Lease()
    abort(lease)
    assert lease.aborted


class FlakyLease(Lease):
    """A lease whose first progress call fails as the stub guard reports a connection that kept dropping."""

    def __init__(self, state="ready"):
        super().__init__()
        self.state, self.calls = state, 0

    def HttpNfcLeaseProgress(self, percent):
        self.calls += 1
        if self.calls == 1:
            raise VSphereError("the connection to vCenter kept dropping during HttpNfcLeaseProgress (reset)")
        super().HttpNfcLeaseProgress(percent)


def test_a_failed_progress_call_is_tried_again_at_the_next_tick():
    lease = FlakyLease()
    with LeaseKeepalive(lease, ByteCounter(100), tick=0.01) as keepalive:
        assert lease.reported.wait(5)  # a later tick renewed the lease
    assert keepalive.failures == 1 and lease.calls >= 2


def test_the_keepalive_ends_with_a_lease_that_has_ended():
    lease = FlakyLease(state="error")  # e.g. timed out or aborted by an administrator
    with LeaseKeepalive(lease, ByteCounter(100), tick=0.01) as keepalive:
        keepalive._thread.join(5)
        assert not keepalive._thread.is_alive()
    assert lease.calls == 1 and lease.reports == []


def test_a_lease_that_timed_out_ends_the_keepalive_at_once():
    class TimedOut(Lease):
        calls = 0

        def HttpNfcLeaseProgress(self, percent):
            self.calls += 1
            raise vim.fault.Timedout()

    lease = TimedOut()
    with LeaseKeepalive(lease, ByteCounter(100), tick=0.01) as keepalive:
        keepalive._thread.join(5)
        assert not keepalive._thread.is_alive()
    assert lease.calls == 1


@pytest.mark.e2e
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
                placement = inventory.locate(s, VSphereTarget(datacenter="DC0", cluster="DC0_C0", datastore="LocalDS_0"))
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
