"""Signature and digest checks that ride along the one pass over an image.

Each check takes bytes with `update()` and gives its verdict only when
`finish()` is called. Nothing is decided at end-of-stream implicitly: a
reader that stops early (a tar reader at its end marker) must not skip the
check, which is how coreos-installer's CVE-2021-20319 happened.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vmcoreos.errors import ConfigError, VerificationError
from vmcoreos.images.keys import PublicKey


class Check:
    def update(self, chunk: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        pass


class DigestCheck(Check):
    def __init__(self, algorithm: str, expected_hex: str, label: str):
        self.algorithm = algorithm
        self.expected = expected_hex.lower()
        self.label = label
        self._hash = hashlib.new(algorithm)

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)

    def finish(self) -> None:
        actual = self._hash.hexdigest()
        if not hmac.compare_digest(actual, self.expected):
            raise VerificationError(
                f"{self.label}: {self.algorithm.upper()} mismatch (expected {self.expected[:16]}…, got {actual[:16]}…);"
                " the file is corrupt or altered"
            )


class Sha512Tap(Check):
    """Just computes SHA-512 for the cache record and the DIGESTS comparison."""

    def __init__(self) -> None:
        self._hash = hashlib.sha512()
        self.hexdigest: str | None = None

    def update(self, chunk: bytes) -> None:
        self._hash.update(chunk)

    def finish(self) -> None:
        self.hexdigest = self._hash.hexdigest()


@dataclass(frozen=True)
class Verdict:
    primary_fingerprint: str
    signing_key: str
    expired_key: bool


def gpgv_binary() -> str:
    path = shutil.which("gpgv")
    if not path:
        raise ConfigError("gpgv is not installed; install it (Debian: apt-get install gpgv) or see the README")
    return path


class SignatureCheck(Check):
    """Streams the data into gpgv, the verifier apt itself uses, against a private keyring.

    A VALIDSIG is required whose last field (the primary key's fingerprint)
    is one we pin or the user trusts. gpgv accepts a signature by a subkey
    that has expired since (old releases) and by a revoked subkey; we accept
    the first, as gpg does, and reject the second.
    """

    def __init__(self, signature: bytes, keys: list[PublicKey], label: str):
        if not keys:
            raise ConfigError(f"{label}: no key to verify it with; pass --trusted-key FILE")
        self.label = label
        self.allowed = {k.fingerprint for k in keys}
        self._dir = tempfile.mkdtemp(prefix="vmcoreos-gpgv-")
        keyring = Path(self._dir, "keyring.gpg")
        keyring.write_bytes(b"".join(dict.fromkeys(k.data for k in keys)))
        sig = Path(self._dir, "image.sig")
        sig.write_bytes(signature)
        self._status = open(Path(self._dir, "status"), "w+b")
        self._log = open(Path(self._dir, "log"), "w+b")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "GNUPGHOME": self._dir}
        self._proc = subprocess.Popen(
            [gpgv_binary(), "--status-fd", "1", "--keyring", str(keyring), str(sig), "-"],
            stdin=subprocess.PIPE,
            stdout=self._status,
            stderr=self._log,
            env=env,
        )
        self._broken = False

    def update(self, chunk: bytes) -> None:
        if self._broken:
            return
        try:
            self._proc.stdin.write(chunk)
        except BrokenPipeError:
            # gpgv gave up early (e.g. an unusable signature); finish() reports why.
            self._broken = True

    def finish(self) -> Verdict:
        try:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
            self._proc.wait()
            self._status.seek(0)
            status = self._status.read().decode("utf-8", "replace")
            return self._judge(status)
        finally:
            self._cleanup()

    def abort(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        for f in (self._status, self._log):
            f.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _judge(self, status: str) -> Verdict:
        lines = [line.split()[1:] for line in status.splitlines() if line.startswith("[GNUPG:] ")]
        words = {w[0]: w[1:] for w in lines if w}
        if "BADSIG" in words:
            raise VerificationError(f"{self.label}: BAD signature; the image was altered or corrupted, do not use it")
        if "REVKEYSIG" in words:
            raise VerificationError(
                f"{self.label}: signed by a revoked key {words['REVKEYSIG'][0]}; refusing it as compromised"
            )
        if "ERRSIG" in words:
            fields = words["ERRSIG"]
            keyid = fields[0] if fields else "?"
            if "NO_PUBKEY" in words or (len(fields) > 5 and fields[5] == "9"):
                raise VerificationError(
                    f"{self.label}: signed by unknown key {keyid}; if you trust it, pass --trusted-key with its public key"
                )
            raise VerificationError(f"{self.label}: signature could not be checked (gpgv error for key {keyid})")
        if "NODATA" in words or "VALIDSIG" not in words:
            raise VerificationError(f"{self.label}: the signature file is empty, truncated or not a signature")
        valid = words["VALIDSIG"]
        primary = valid[-1].upper()
        if primary not in self.allowed:
            raise VerificationError(
                f"{self.label}: signed by key {primary}, which is not pinned for this distro;"
                " pass --trusted-key if you trust it"
            )
        return Verdict(primary, valid[0], "EXPKEYSIG" in words)
