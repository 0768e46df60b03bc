"""The one way an opened image becomes a VerifiedImage, or a refusal.

A download, a cached file, a local --ova read in place and a local --ova
verified by its own upload (verified_upload.py) all go through a Verification:

1. recall(): a record of this host may stand in for reading the file (only
   for a file in the private cache, unchanged since: images/trust/known.py);
2. otherwise one pass (an ImagePass: signature, SHA-512, stream SHA-256, the
   .mf digests) takes the bytes as they are read, downloaded or uploaded;
3. verdicts(): every check's verdict, explicitly, after the last byte;
4. confirm(): the OVA's manifest against the digests the pass took, anything
   the caller checks in the signed OVF, and the file unchanged since it was
   opened;
5. remember() and image(): the verification recorded, and the VerifiedImage
   built, here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from vmcoreos.errors import VerificationError
from vmcoreos.images.trust import binding, keys as keymod, known
from vmcoreos.images.trust.imagepass import ImagePass, note_expired, read_through
from vmcoreos.images.archive.ova import OvaArchive
from vmcoreos.images.verified import VerifiedImage, identity
from vmcoreos.images.trust.verifiers import Verdict
from vmcoreos.reporting import Reporter


@dataclass(frozen=True)
class Origin:
    """What an image is besides its bytes: where it came from and what it is labelled."""

    distro: str
    channel: str = "local"
    source: str = ""  # where it came from, without credentials
    version: str | None = None  # the release's; None: "local-<SHA-512 prefix>" once the bytes are known
    sha256: str | None = None  # the FCOS stream metadata's, checked in the same pass
    cached: bool = False


class Verification:
    """One image's verification, from its opened file (or the bytes of its download) to a VerifiedImage."""

    def __init__(self, path: Path, label: str, signature: bytes | None, signing: list[keymod.PublicKey],
                 origin: Origin, reporter: Reporter, *, cache_root: Path | None = None, members: bool = True):
        self.path = Path(path)
        self.label = label
        self.signature = signature
        self.signing = signing
        self.origin = origin
        self.reporter = reporter
        self.cache_root = cache_root
        self.members = members  # the .mf digests: not needed for a cached file whose SHA-512 is on record
        self._pass: ImagePass | None = None
        self._stamped = known.stamp()
        self.verdict: Verdict | None = None
        self.sha512: str | None = None

    # -- 1. a record instead of a read ------------------------------------------------

    def recall(self, f: BinaryIO, sha512: str | None = None) -> VerifiedImage | None:
        """The image on this host's record, if it vouches for the open file f (and names sha512, if given)."""
        record = known.recall(self.path, f, self.signature, self.signing, sha256=self.origin.sha256,
                              cache_root=self.cache_root)
        if record is None or (sha512 is not None and record.sha512 != sha512):
            return None
        self.verdict, self.sha512 = known.verdict(record), record.sha512
        return self.image(f, version=self.origin.version or record.version)

    # -- 2. the one pass -------------------------------------------------------------------

    @property
    def check(self) -> ImagePass:
        if self._pass is None:
            self._pass = ImagePass(self.label, self.signature, self.signing, sha256=self.origin.sha256,
                                   members=self.members)
        return self._pass

    def restart(self) -> ImagePass:
        """A fresh pass (a download that starts over); the first call just starts one."""
        self.abort()
        self._stamped = known.stamp()
        return self.check

    def read(self, f: BinaryIO, what: str) -> int:
        """The whole open file, once, through the pass; its size."""
        self._stamped = known.stamp()
        self._before = identity(f)
        return read_through(f, self.check, self.reporter, what)

    def abort(self) -> None:
        if self._pass is not None:
            self._pass.abort()
            self._pass = None

    # -- 3.-5. verdicts, confirmation, record, result ----------------------------------------

    def verdicts(self, expected_sha512: str | None = None, digests_name: str = "") -> tuple[Verdict | None, str]:
        """Every check's verdict, after the last byte; the SHA-512 held to a signed DIGESTS' (or a record's)."""
        self.verdict, self.sha512 = self.check.finish(expected_sha512, digests_name)
        note_expired(self.reporter, self.verdict, self.label)
        return self.verdict, self.sha512

    def confirm(self, f: BinaryIO, *, archive: OvaArchive | None = None, ident: tuple[int, ...] | None = None,
                inspect: Callable[[OvaArchive], None] | None = None) -> None:
        """The manifest against the pass's digests, inspect() on the signed OVF, and the file unchanged."""
        ident = ident or getattr(self, "_before", None) or identity(f)
        if not self.members:
            if identity(f) != ident:
                raise VerificationError(f"{self.label} changed while it was read")
            return
        opened = archive or OvaArchive(self.path, name=self.label, fileobj=f, identity=ident)
        try:
            opened.verify_manifest(self.check.members)
            if inspect is not None:
                inspect(opened)
            opened.check_unchanged()  # written to while it was read: what was verified is unknown
        finally:
            if archive is None:
                opened.close()

    @property
    def version(self) -> str:
        return self.origin.version or f"local-{self.sha512[:12]}"

    def remember(self, f: BinaryIO, *, path: Path | None = None) -> None:
        """Record the verification for the open file f (at path, if it was renamed since)."""
        known.remember(path or self.path, identity(f), self._stamped, self.signature, self.signing, self.verdict,
                       self.sha512, self.version, sha256=self.origin.sha256, cache_root=self.cache_root)

    def image(self, f: BinaryIO, *, path: Path | None = None, version: str | None = None) -> VerifiedImage:
        """The VerifiedImage, built here only: f stays open as the verified descriptor."""
        ident = identity(f)
        return VerifiedImage(
            path=path or self.path, distro=self.origin.distro, version=version or self.version, sha512=self.sha512,
            size=ident[2], verdict=self.verdict, channel=self.origin.channel, source=self.origin.source,
            cached=self.origin.cached, file=f, identity=ident, signed=binding.signature_time(self.signature),
        )

    def finish(self, f: BinaryIO, *, expected_sha512: str | None = None, digests_name: str = "") -> VerifiedImage:
        """After read(): verdicts, confirmation, record and result, for a file verified where it lies."""
        self.verdicts(expected_sha512, digests_name)
        self.confirm(f)
        self.remember(f)
        return self.image(f)
