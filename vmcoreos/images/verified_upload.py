"""A local OVA verified by the very bytes its upload reads: one read for a fresh import.

A StreamedOva is a CheckedArchive (images/archive/ova.py) for the importer. Each
member stream it hands out reads the file at the member's offset; the bytes
it reads at the frontier of the image pass (the signature verifier, SHA-512, the .mf digests:
images/trust/imagepass.py) are also fed to that pass, together with the few bytes
before them (tar headers, the OVF and the .mf), so the pass sees the whole
file once and in order. A retried upload re-reads what the pass has already
seen without feeding it again.

Nothing is trusted at end-of-stream: verify_uploaded(), which the importer
calls after the last byte went up and before it completes the lease, feeds
the rest of the file, asks every check for its verdict and only then yields
the VerifiedImage. Any failure there aborts the import (nothing is left in
vSphere), and the caller marks and records the template only after it.

An image verified before its upload (a download, a cached file, a local file
read in full) goes up through a RehashedOva: the same one read, through a
SHA-512 only, which must be the verified one before the lease completes. The
file's identity (images/verified.py) cannot see every write: a page already
dirty in a shared writable mapping changes without moving mtime or ctime
until writeback, so the bytes themselves are compared.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from vmcoreos.errors import VerificationError
from vmcoreos.images.archive.ova import MemberReader, OvaArchive
from vmcoreos.images.verified import VerifiedImage, identity
from vmcoreos.images.transfer.taps import CHUNK, BackgroundTap
from vmcoreos.images.verification import Verification
from vmcoreos.images.trust.digests import Check, Sha512Tap, abbreviate


class OnePass:
    """An opened OVA whose upload reads it once, in order, through a check (see the module's docstring)."""

    def __init__(self, path: Path, f: BinaryIO, check: Check, ident: tuple[int, ...] | None = None):
        self.path = Path(path)
        self._file = f
        self._identity = ident or identity(f)
        self._size = self._identity[2]
        self._check = check
        self._archive = OvaArchive(self.path, fileobj=f, identity=self._identity)
        self.name = self._archive.name
        self.descriptor = self._archive.descriptor
        self._fed = 0  # bytes of the file the pass has seen, from its start

    # -- what the space check reads (the tar index and the OVF only) ----------------

    def disk_populated(self) -> int:
        return self._archive.disk_populated()

    def disk_capacity(self) -> int:
        return self._archive.disk_capacity()

    # -- CheckedArchive ----------------------------------------------------------------

    def open(self, name: str) -> tuple[BinaryIO, int]:
        offset, size = self._archive.member_span(name)
        return MemberReader(self._read, offset, size, self.name), size

    def manifest_check(self, name: str) -> None:
        return None  # the pass covers the member; it is not hashed a second time

    def verify_descriptor_against_manifest(self) -> None:
        self._archive.verify_descriptor_against_manifest()

    def verify_uploaded(self) -> None:
        raise NotImplementedError

    def check_unchanged(self) -> None:
        self._archive.check_unchanged()

    # -- the one pass ------------------------------------------------------------------

    def _read(self, pos: int, n: int) -> bytes:
        """n bytes at pos; the part past the pass's frontier goes through the pass first."""
        if pos > self._fed:
            self._feed_to(pos)
        chunk = os.pread(self._file.fileno(), n, pos)
        if chunk and pos + len(chunk) > self._fed:
            new = chunk[self._fed - pos:] if self._fed > pos else chunk
            self._check.update(new)
            self._fed = pos + len(chunk)
        return chunk

    def _feed_to(self, end: int) -> None:
        while self._fed < end:
            chunk = os.pread(self._file.fileno(), min(CHUNK, end - self._fed), self._fed)
            if not chunk:
                break  # shorter than when it was opened: the explicit checks refuse it
            self._check.update(chunk)
            self._fed += len(chunk)

    def close(self) -> None:
        self._archive.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def upload_read(image: VerifiedImage):
    """The verified image for its upload: read once through the verified descriptor, its SHA-512 held to the
    verified one before the lease completes; by path, every .mf digest checked, for one made without one."""
    if image.file is None or image.identity is None:
        return OvaArchive(image.path)
    return RehashedOva(image)


class RehashedOva(OnePass):
    """A verified image's upload: its one read through SHA-512, which must be the verified one."""

    def __init__(self, image: VerifiedImage):
        self._sha512 = Sha512Tap()
        super().__init__(image.path, image.file, BackgroundTap(self._sha512), image.identity)
        self._expected = image.sha512

    def verify_uploaded(self) -> None:
        self._feed_to(self._size)
        self._check.finish()
        actual = self._sha512.hexdigest
        if actual != self._expected.lower() or self._fed != self._size:
            want, got = abbreviate(self._expected.lower(), actual or "")
            raise VerificationError(
                f"{self.name}: the bytes uploaded (SHA-512 {got}) are not the ones verified ({want}); something"
                " writes to the file (a shared mapping, another process): stop it, then run again"
            )
        self._archive.check_unchanged()

    def close(self) -> None:
        super().close()
        self._check.abort()  # a no-op after finish(); stops the hashing thread of an upload cut short


class StreamedOva(OnePass):
    """An opened, not yet verified local OVA whose upload is its verification read (images/verification.py)."""

    def __init__(self, f: BinaryIO, check: Verification):
        self._verification = check
        super().__init__(check.path, f, check.check)
        self.image: VerifiedImage | None = None  # set by verify_uploaded()

    def verify_uploaded(self) -> None:
        """After the last byte went up: the rest of the file through the pass, then every verdict, explicitly."""
        self._feed_to(self._size)
        check = self._verification
        verdict, _ = check.verdicts()
        check.confirm(self._file, archive=self._archive, ident=self._identity)
        check.remember(self._file)
        self.image = check.image(self._file)
        check.reporter.event(f"verified {self.path.name} while uploading it: signed by {verdict.primary_fingerprint}")

    def close(self) -> None:
        """Ends the pass: its checks are aborted unless verify_uploaded() passed; the file stays open only then."""
        super().close()
        if self.image is None:
            self._check.abort()
            self._file.close()
