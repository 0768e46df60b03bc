"""An interrupt stops parallel node work at once: queued calls dropped, awaited tasks cancelled, pollers told."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from vmcoreos.cluster import parallel


@pytest.fixture(autouse=True)
def fresh_stop():
    parallel.stopping.clear()
    yield
    parallel.stopping.clear()


@pytest.fixture
def sigint_raises():
    """Python's own SIGINT handler, whatever the suite was started with: a shell's background job
    (`make test &`, nohup) inherits SIGINT ignored, and Python then installs no handler at all."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupt_drops_queued_calls_cancels_tasks_and_returns_within_the_grace(mocker, sigint_raises):
    cancel = mocker.patch.object(parallel.tasks.in_flight, "cancel_all")
    started = []

    def call(i):
        started.append(i)
        parallel.stopping.wait(30)  # a poller that ends when told

    # A real SIGINT to the main thread (it arrives as KeyboardInterrupt), which wakes its blocking wait.
    threading.Timer(0.3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)).start()
    begin = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        parallel.run_all(call, [(i,) for i in range(10)], 2)
    assert time.monotonic() - begin < parallel.GRACE
    assert sorted(started) == [0, 1]
    cancel.assert_called_once()


def test_without_an_interrupt_every_call_runs_and_the_first_failure_is_raised_in_call_order():
    def call(i):
        if i in (2, 4):
            raise ValueError(i)
        return i

    futures = parallel.run_all(call, [(i,) for i in range(6)], 3)
    assert [f.result() for f in futures if not f.exception()] == [0, 1, 3, 5]
    with pytest.raises(ValueError, match="2"):
        parallel.first_failure(futures)
