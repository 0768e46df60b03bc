"""Wall-clock deadlines that hold while a read is blocked.

A socket timeout bounds each recv(), not a phase: a peer that sends one byte
just inside it keeps any read loop going for as long as it likes, and a
buffered read (http.client, ssl) blocks until its buffer fills. Checking a
deadline between reads cannot end a read that does not return. So a phase
runs under `deadline(seconds, what)`: a timer that, once the wall clock
passes, shuts down every socket registered with the phase (`watch()`), which
makes the blocked recv() return at once; the caller then sees `expired` and
says which peer and which phase, instead of whatever error the cut caused.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any, Iterator

_local = threading.local()


class Phase:
    """One phase's deadline and the sockets (or objects with a .sock) it shuts down when it passes."""

    def __init__(self, what: str, seconds: float):
        self.what = what
        self.seconds = seconds
        self.expired = False
        self._held: list[Any] = []
        self._lock = threading.Lock()

    def add(self, holder: Any) -> None:
        with self._lock:
            self._held.append(holder)
            expired = self.expired
        if expired:
            _shut(holder)

    def fire(self) -> None:
        with self._lock:
            self.expired = True
            held = list(self._held)
        for holder in held:
            _shut(holder)


def _shut(holder: Any) -> None:
    sock = holder if isinstance(holder, socket.socket) else getattr(holder, "sock", None)
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError):
        sock.shutdown(socket.SHUT_RDWR)  # a blocked recv() on it returns now, in whichever thread


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[Phase]:
    """Run a phase of at most `seconds` of wall clock; sockets watched meanwhile are cut when it passes."""
    phase = Phase(what, seconds)
    timer = threading.Timer(max(0.0, seconds), phase.fire)
    timer.daemon = True
    stack = _stack()
    stack.append(phase)
    timer.start()
    try:
        yield phase
    finally:
        timer.cancel()
        timer.join()
        stack.remove(phase)


def watch(holder: Any) -> None:
    """Register a socket (or a connection whose .sock will be one) with this thread's running phases."""
    for phase in _stack():
        phase.add(holder)


def current() -> Phase | None:
    stack = _stack()
    return stack[-1] if stack else None


def expired() -> Phase | None:
    """The innermost of this thread's phases whose deadline has passed, if any."""
    return next((p for p in reversed(_stack()) if p.expired), None)


def _stack() -> list[Phase]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack
