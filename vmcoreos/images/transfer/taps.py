"""One pass over a byte stream, feeding every tap (checks, hashes, progress) the same bytes."""

from __future__ import annotations

import queue
import threading
from typing import BinaryIO, Callable, Iterable

CHUNK = 1 << 20  # large reads: http.client's 8 KiB default costs a syscall per 8 KiB


class TeeReader:
    """A file-like reader that shows each chunk it returns to its taps.

    Used as an HTTP request body, so the upload, the .mf digest and the
    progress counter all see exactly the bytes that went on the wire.
    """

    def __init__(self, raw: BinaryIO, taps: Iterable, on_bytes: Callable[[int], None] | None = None):
        self.raw = raw
        self.taps = list(taps)
        self.on_bytes = on_bytes

    def read(self, size: int = CHUNK) -> bytes:
        if size is None or size < 0:
            size = CHUNK
        chunk = self.raw.read(size)
        if chunk:
            for tap in self.taps:
                tap.update(chunk)
            if self.on_bytes:
                self.on_bytes(len(chunk))
        return chunk

    def __iter__(self):
        while chunk := self.read(CHUNK):
            yield chunk


def pump(source: BinaryIO, taps: Iterable, sink: BinaryIO | None = None, on_bytes=None) -> int:
    total = 0
    reader = TeeReader(source, taps, on_bytes)
    for chunk in reader:
        if sink is not None:
            sink.write(chunk)
        total += len(chunk)
    return total


class BackgroundTap:
    """Runs a tap's update() on its own thread, so hashing overlaps sending.

    hashlib releases the GIL on large buffers, so a SHA-1 of the upload runs on
    the other core instead of stalling the socket. finish() waits for every
    chunk, then gives the wrapped tap's verdict: nothing is skipped.
    """

    def __init__(self, tap, depth: int = 8):
        self.tap = tap
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.tap.update(chunk)
                except BaseException as exc:  # reported by finish()
                    self._error = exc

    def update(self, chunk: bytes) -> None:
        self._queue.put(bytes(chunk))

    def _join(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def finish(self):
        self._join()
        if self._error is not None:
            raise self._error
        return self.tap.finish()

    def abort(self) -> None:
        self._join()
        abort = getattr(self.tap, "abort", None)
        if abort:
            abort()
