"""Node operations side by side, and how an interrupt stops them.

A ThreadPoolExecutor left by an exception (SIGINT/SIGTERM arrive as
KeyboardInterrupt) first waits for every queued call: at real speed that is
minutes, then systemd's SIGKILL, with no cleanup and no logout. Here an
interrupt drops the queued calls, cancels the vSphere tasks the running ones
wait on, sets `stopping` for the loops that poll, and gives the running calls
GRACE seconds before it goes on to the callers' cleanup (which logs out; a
call still made after that fails, and the session is never logged in again).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Callable

from vmcoreos.vsphere import tasks

GRACE = 3.0  # of the 10 s an interrupted run has, before the lock is released and the session logged out
stopping = threading.Event()  # set once an interrupt arrived; polling loops in the workers end on it


def run_all(fn: Callable, calls: list[tuple], workers: int) -> list[Future]:
    """fn(*args) for each call, at most `workers` at once; the futures, every one done."""
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    futures = [pool.submit(fn, *args) for args in calls]
    try:
        wait(futures)
    except BaseException:
        stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        tasks.in_flight.cancel_all()
        # Only the calls that had started: wait() never counts a future canceled this way as done.
        wait([f for f in futures if not f.cancelled()], timeout=GRACE)
        raise
    pool.shutdown()
    return futures


def first_failure(futures: list[Future]) -> None:
    """Raise the first call's exception, in call order, if any failed."""
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
