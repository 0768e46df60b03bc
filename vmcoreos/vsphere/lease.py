"""The NFC lease of an import: one byte counter, and the keepalive that reports it.

Like govc's lease updater: a ticker every LEASE_TICK seconds sends
HttpNfcLeaseProgress with the percent the one shared counter has reached
(a 0 still renews the lease); the same counter feeds the progress display.
On any upload failure the lease is aborted (abort).

A failed progress call does not end the keepalive: a dropped connection, a
timeout or a passing fault is tried again at the next tick (the lease lasts
minutes without news). Only a lease that has ended (done, aborted, error,
gone) stops it before the upload does.
"""

from __future__ import annotations

import threading
from typing import Callable

from pyVmomi import vim, vmodl

LEASE_TICK = 2.0  # seconds between HttpNfcLeaseProgress calls; leases time out after minutes
ENDED = ("done", "aborted", "error")


class ByteCounter:
    """The one counter both the progress display and the lease keepalive read."""

    def __init__(self, total: int, on_bytes: Callable[[int, int], None] | None = None):
        self.total = max(total, 1)
        self.done = 0
        self._lock = threading.Lock()
        self.on_bytes = on_bytes

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
        if self.on_bytes:
            self.on_bytes(self.done, self.total)

    @property
    def percent(self) -> int:
        return min(99, int(self.done * 100 / self.total))


class LeaseKeepalive:
    """Reports counter.percent on the lease every LEASE_TICK seconds while the block runs; joined on exit."""

    def __init__(self, lease, counter: ByteCounter, tick: float | None = None):
        self.lease = lease
        self.counter = counter
        self.tick = LEASE_TICK if tick is None else tick
        self.failures = 0  # progress calls that failed and were tried again at the next tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nfc-keepalive", daemon=True)

    def __enter__(self) -> "LeaseKeepalive":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                # A 0 % report still renews the lease.
                self.lease.HttpNfcLeaseProgress(self.counter.percent)
                continue
            except (vmodl.fault.ManagedObjectNotFound, vim.fault.Timedout):
                return  # the lease is gone or timed out: the upload itself will fail and say why
            except Exception:
                self.failures += 1
            if self._ended():
                return

    def _ended(self) -> bool:
        """Whether the lease is over, after a failed progress call; unknown counts as not (try again)."""
        try:
            return self.lease.state in ENDED
        except vmodl.fault.ManagedObjectNotFound:
            return True
        except Exception:
            return False


def abort(lease) -> None:
    """Abort the lease after a failed upload; a lease that is gone already needs nothing more."""
    try:
        lease.HttpNfcLeaseAbort()
    except Exception:
        pass
