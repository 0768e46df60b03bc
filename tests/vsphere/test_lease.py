"""The lease keepalive reports the one byte counter the upload advances, and stops when asked.

On the strict bed (a lease that fails without progress) it is tested in tests/e2e/test_lease_bed.py.
"""

import threading

from pyVmomi import vim

from vmcoreos.errors import VSphereError
from vmcoreos.vsphere.lease import ByteCounter, LeaseKeepalive, abort


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
