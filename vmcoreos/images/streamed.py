"""A local OVA verified by the very bytes its upload reads: one read for a fresh import.

A StreamedOva is a CheckedArchive (images/ova.py) for the importer. Each
member stream it hands out reads the file at the member's offset; the bytes
it reads at the frontier of the image pass (the signature verifier, SHA-512, the .mf digests:
images/imagepass.py) are also fed to that pass, together with the few bytes
before them (tar headers, the OVF and the .mf), so the pass sees the whole
file once and in order. A retried upload re-reads what the pass has already
seen without feeding it again.

Nothing is trusted at end-of-stream: verify_uploaded(), which the importer
calls after the last byte went up and before it completes the lease, feeds
the rest of the file, asks every check for its verdict and only then yields
the VerifiedImage. Any failure there aborts the import (nothing is left in
vSphere), and the caller marks and records the template only after it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from vmcoreos.images import binding, known
from vmcoreos.images.imagepass import ImagePass, note_expired
from vmcoreos.images.ova import MemberReader, OvaArchive
from vmcoreos.images.source import VerifiedImage, identity
from vmcoreos.images.stream import CHUNK
from vmcoreos.reporting import Reporter


class StreamedOva:
    """An opened, not yet verified local OVA whose upload is its verification read."""

    def __init__(self, path: Path, f: BinaryIO, distro: str, signature: bytes, signing, reporter: Reporter,
                 state_root: Path | None):
        self.path = Path(path)
        self._file = f
        self._distro = distro
        self._signature = signature
        self._signing = signing
        self._reporter = reporter
        self._state_root = state_root
        self._stamped = known.stamp()
        self._identity = identity(f)
        self._size = self._identity[2]
        self._archive = OvaArchive(self.path, fileobj=f, identity=self._identity)
        self.name = self._archive.name
        self.descriptor = self._archive.descriptor
        self._check = ImagePass(self.path.name, signature, signing)
        self._fed = 0  # bytes of the file the pass has seen, from its start
        self.image: VerifiedImage | None = None  # set by verify_uploaded()

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
        return None  # the pass's .mf digests cover the member; it is not hashed a second time

    def verify_descriptor_against_manifest(self) -> None:
        self._archive.verify_descriptor_against_manifest()

    def verify_uploaded(self) -> None:
        """After the last byte went up: the rest of the file through the pass, then every verdict, explicitly."""
        self._feed_to(self._size)
        verdict, sha512 = self._check.finish()
        note_expired(self._reporter, verdict, self.path.name)
        self._archive.verify_manifest(self._check.members)
        self._archive.check_unchanged()  # written to while it was read: what went up is unknown
        version = f"local-{sha512[:12]}"
        if self._state_root:
            known.remember(self.path, self._identity, self._stamped, self._signature, self._signing, verdict, sha512,
                           version, cache_root=self._state_root)
        self._reporter.event(f"verified {self.path.name} while uploading it: signed by {verdict.primary_fingerprint}")
        self.image = VerifiedImage(self.path, self._distro, version, sha512, self._size, verdict, "local",
                                   str(self.path), file=self._file, identity=self._identity,
                                   signed=binding.signature_time(self._signature))

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
        """Ends the pass: its checks are aborted unless verify_uploaded() passed; the file stays open only then."""
        self._archive.close()
        if self.image is None:
            self._check.abort()
            self._file.close()

    def __enter__(self) -> "StreamedOva":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

