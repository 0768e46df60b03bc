"""HTTP reads that a wall-clock deadline can cut while they are blocked (vmcoreos/watchdog.py).

requests' timeouts bound one socket read each: a server that sends a byte
just inside the read timeout never trips them, and a buffered read waits for
its buffer. Every pooled connection is handed to the running phase, which
shuts its socket down when the phase's time is up.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

import requests

from vmcoreos import watchdog
from vmcoreos.errors import DownloadError


class WatchedAdapter(requests.adapters.HTTPAdapter):
    """Hands every pooled connection to the running phase's deadline (vmcoreos/watchdog.py), so a read
    blocked on a server that trickles is cut when the phase's wall clock runs out, not only between reads."""

    def get_connection_with_tls_context(self, *args, **kwargs):
        pool = super().get_connection_with_tls_context(*args, **kwargs)
        if not getattr(pool, "_vmcoreos_watched", False):
            get = pool._get_conn

            def watched(timeout=None):
                conn = get(timeout)
                watchdog.watch(conn)
                return conn

            pool._get_conn, pool._vmcoreos_watched = watched, True
        return pool


@contextlib.contextmanager
def within(ends: float, what: str, message: Callable[[], str], error: type[Exception] = DownloadError) -> Iterator[None]:
    """A phase that ends by `ends` (monotonic), however the server paces its bytes; message() says which."""
    with watchdog.deadline(max(0.0, ends - time.monotonic()), what) as phase:
        try:
            yield
        except Exception:
            if phase.expired:
                raise error(message()) from None
            raise
        if phase.expired:  # a cut read looks like the end of the data: what was read is not all of it
            raise error(message())
