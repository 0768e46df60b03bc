"""The file a download is written into: past the page cache (O_DIRECT) where the filesystem allows it.

Why: a buffered write of a new 1 GiB file makes the kernel find 262,144
fresh page-cache pages. On the 2-core VM `make bench` runs on, that cost
2.7-3.6 s of system CPU per GiB (a plain `cp` of the image: 3.4 s), more than
verifying the image; written with O_DIRECT from one reused, page-aligned
buffer it took 0.56-0.63 s and 0.2 s of CPU. The file is read back once at
most (the upload), and a verified image already on record is not read at
all, so keeping it in the page cache buys nothing.

Blocks of BLOCK bytes go out with O_DIRECT; the last, shorter block is
written after O_DIRECT is switched off, as the alignment rule needs. A
filesystem that refuses O_DIRECT (tmpfs before Linux 6.6, some network
filesystems) gets ordinary buffered writes, with nothing else changed.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from pathlib import Path

BLOCK = 1 << 20  # a multiple of every logical block size (512 B, 4 KiB), and the download's read size
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class CacheFile:
    """A new file, written in order, that never follows a symlink planted where it should be."""

    def __init__(self, path: Path | str):
        self.name = str(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        self._buffer = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT needs
        self._view = memoryview(self._buffer)
        self._fill = 0
        self.direct = self._set_direct(True)

    def _set_direct(self, on: bool) -> bool:
        if not _O_DIRECT:
            return False
        flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
        try:
            fcntl.fcntl(self._fd, fcntl.F_SETFL, flags | _O_DIRECT if on else flags & ~_O_DIRECT)
        except OSError:
            return False
        return on

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            n = min(BLOCK - self._fill, len(view))
            self._view[self._fill : self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == BLOCK:
                self._write_out(self._view)
                self._fill = 0
        return len(data)

    def _write_out(self, block: memoryview) -> None:
        try:
            written = os.write(self._fd, block)
        except OSError as exc:
            # EINVAL: the filesystem took the flag but not the write. Anything else is a real error.
            if not self.direct or exc.errno != errno.EINVAL:
                raise
            self.direct = self._set_direct(False)
            written = os.write(self._fd, block)
        while written < len(block):  # a short write: only ever seen buffered, at a signal
            written += os.write(self._fd, block[written:])

    def restart(self) -> None:
        """Empty again, for a download that starts over."""
        self._fill = 0
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)

    def flush(self) -> None:
        """The last, partial block: written buffered, since O_DIRECT needs whole blocks."""
        if self._fill:
            if self.direct:
                self.direct = self._set_direct(False)
            self._write_out(self._view[: self._fill])
            self._fill = 0

    def close(self, *, keep_tail: bool = True) -> None:
        if self._fd < 0:
            return
        try:
            if keep_tail:
                self.flush()
        finally:
            os.close(self._fd)
            self._fd = -1
            self._view.release()
            self._buffer.close()

    def __enter__(self) -> "CacheFile":
        return self

    def __exit__(self, kind, *exc) -> None:
        self.close(keep_tail=kind is None)  # a failed download is deleted: no tail to write, no error to mask
