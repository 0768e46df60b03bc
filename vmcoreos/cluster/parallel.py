"""Node operations side by side, and how an interrupt stops them.

A ThreadPoolExecutor left by an exception (SIGINT/SIGTERM arrive as
KeyboardInterrupt) first waits for every queued call, and the interpreter
joins its threads at exit whatever they wait on: at real speed that is
minutes, then systemd's SIGKILL, with no cleanup and no logout. Here an
interrupt drops the queued calls, cancels the vSphere tasks the running ones
wait on, sets `stopping` for the loops that poll, and gives the running calls
GRACE seconds before it goes on to the callers' cleanup (which logs out; a
call still made after that fails, and the session is never logged in again).

The workers are daemon threads, which the executor's are not: one still
waiting on a task vCenter cannot cancel (Destroy_Task) would otherwise hold
the exit until that task ends, or until its long poll gives up (30 s).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, wait
from typing import Callable

from vmcoreos.vsphere import tasks

GRACE = 3.0  # of the 10 s an interrupted run has, before the lock is released and the session logged out
stopping = threading.Event()  # set once an interrupt arrived (it ends the process); polling loops end on it


def run_all(fn: Callable, calls: list[tuple], workers: int) -> list[Future]:
    """fn(*args) for each call, at most `workers` at once; the futures, every one done."""
    futures = [Future() for _ in calls]
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for job in zip(futures, calls):
        todo.put(job)

    def work() -> None:
        while not stopping.is_set():
            try:
                future, args = todo.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

    for _ in range(min(max(1, workers), len(calls))):
        threading.Thread(target=work, name="vmcoreos-node-op", daemon=True).start()
    try:
        wait(futures)
    except BaseException:
        stopping.set()
        for future in futures:
            future.cancel()  # only the ones not started yet
        tasks.in_flight.cancel_all()
        # Only the calls that had started: wait() never counts a future canceled before it ran as done.
        wait([f for f in futures if not f.cancelled()], timeout=GRACE)
        raise
    return futures


def first_failure(futures: list[Future]) -> None:
    """Raise the first call's exception, in call order, if any failed."""
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
