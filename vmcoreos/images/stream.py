"""One pass over a byte stream, feeding every tap (checks, hashes, progress) the same bytes."""

from __future__ import annotations

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
