"""The lease keepalive reports the one byte counter the upload advances, and stops when asked."""

import threading

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
