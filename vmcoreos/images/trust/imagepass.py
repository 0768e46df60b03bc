"""One read of an image and the checks it feeds (an ImagePass), and the signature it is checked against.

The checks give their verdicts only when asked, explicitly, after the last
byte: a reader that stops early (a tar reader at its end marker) cannot skip
them.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import BinaryIO

from vmcoreos.errors import DownloadError, VerificationError
from vmcoreos.images.trust import keys as keymod
from vmcoreos.images.transfer.download import Http
from vmcoreos.images.archive.manifest import MemberDigestTap
from vmcoreos.images.verified import is_url
from vmcoreos.images.transfer.taps import BackgroundTap, pump
from vmcoreos.images.trust.signature import SignatureCheck
from vmcoreos.images.trust.verifiers import Verdict
from vmcoreos.images.trust.digests import Check, DigestCheck, Sha512Tap, abbreviate
from vmcoreos.reporting import Reporter
from vmcoreos.text import redact


def warn(reporter: Reporter, message: str) -> None:
    getattr(reporter, "warn", reporter.event)(message)


def note_expired(reporter: Reporter, verdict: Verdict | None, label: str) -> None:
    """One line when a signature is by a subkey that has expired since (made before it expired): valid, but worth knowing."""
    if verdict is not None and verdict.expired_key:
        reporter.event(
            f"note: {label} is signed by subkey {verdict.signing_key}, which has expired since;"
            " accepted, as it signed before the expiry"
        )


class ImagePass(Check):
    """The checks one read of an image goes through; their verdicts come only from finish()."""

    def __init__(self, label: str, signature: bytes | None, signing: list[keymod.PublicKey], *,
                 sha256: str | None = None, members: bool = True):
        self.label = label
        self.sha512 = Sha512Tap()
        # The OVA's .mf digests; not needed to re-check a cached file whose SHA-512 is on record.
        self.members = MemberDigestTap(label) if members else None
        self.sha256 = DigestCheck("sha256", sha256, f"{label} (stream metadata)") if sha256 else None
        self.signature = SignatureCheck(signature, signing, label) if signature is not None else None
        # Every check on a thread of its own (the verifier's feeder is one): hashlib lets go of the GIL on
        # large chunks, so the hashes run beside the verifier and the reading or receiving thread instead of
        # one after another in it: a 1 GiB fetch on 2 busy cores went from 9.7-11.5 s to 7.3-9.8 s.
        self._hashes = [BackgroundTap(c) for c in (self.sha512, self.sha256, self.members) if c]
        self._taps: list[Check] = ([self.signature] if self.signature else []) + self._hashes

    def update(self, chunk: bytes) -> None:
        for tap in self._taps:
            tap.update(chunk)

    def abort(self) -> None:
        for tap in self._taps:
            tap.abort()

    def finish(self, expected_sha512: str | None = None, digests_name: str = "") -> tuple[Verdict | None, str]:
        """Every check, explicitly, after the last byte: signature, SHA-256, SHA-512 against DIGESTS."""
        try:
            verdict = self.signature.finish() if self.signature is not None else None
            for tap in self._hashes:
                tap.finish()  # sha512, then sha256 and the .mf digests, each after its last chunk
            actual = self.sha512.hexdigest
            if expected_sha512 is not None and not hmac.compare_digest(actual, expected_sha512):
                want, got = abbreviate(expected_sha512, actual)
                raise VerificationError(
                    f"{self.label}: SHA-512 {got} differs from {want} in {digests_name}; the file is corrupt or altered"
                )
        except BaseException:
            self.abort()
            raise
        return verdict, actual


def read_through(f: BinaryIO, check: Check, reporter: Reporter, label: str) -> int:
    """One pass over an open image from its start, through check."""
    total = os.fstat(f.fileno()).st_size
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        reporter.transfer(label, done, total)

    try:
        f.seek(0)
        return pump(f, [check], on_bytes=progress)
    except BaseException:
        check.abort()
        raise


def read_signature(source: str, label: str, http: Http, image_url: str | None = None) -> bytes:
    if is_url(source):
        data = http.get_bytes(source, "signature", missing_ok=True)
        if data is None:
            if image_url is not None and http.status(image_url) in (404, 410):
                raise DownloadError(f"cannot download {redact(image_url)}: HTTP 404; check --version, --channel and --base-url")
            raise VerificationError(
                f"{label}: no signature at {redact(source)}; pass --sig with the OVA's .sig"
                " (or --insecure-skip-verify, not advised)"
            )
        return data
    path = Path(source)
    if not path.is_file():
        raise VerificationError(
            f"{label}: signature {source} not found; pass --sig with the OVA's .sig file"
            " (or --insecure-skip-verify, not advised)"
        )
    data = path.read_bytes()
    if len(data) > 1 << 20:
        raise VerificationError(f"{label}: signature {source} is {len(data)} bytes, too large to be a signature")
    return data
