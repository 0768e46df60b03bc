"""Signature and digest checks that ride along the one pass over an image.

Each check takes bytes with `update()` and gives its verdict only when
`finish()` is called. Nothing is decided at end-of-stream implicitly: a
reader that stops early (a tar reader at its end marker) must not skip the
check, which is how coreos-installer's CVE-2021-20319 happened.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import hmac
import os
import queue
import re
import shutil
import stat
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from vmcoreos.errors import ConfigError, VerificationError
from vmcoreos.images.keys import PublicKey
from vmcoreos.settings import ENV_GPGV


_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux only; elsewhere the fcntl call just fails


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
            expected, got = abbreviate(self.expected, actual)
            raise VerificationError(
                f"{self.label}: {self.algorithm.upper()} mismatch (expected {expected}, got {got});"
                " the file is corrupt or altered"
            )


def abbreviate(expected: str, actual: str, width: int = 16) -> tuple[str, str]:
    """Two hex digests shortened to a window where they differ, so a message shows the difference."""
    first = next((i for i, (a, b) in enumerate(zip(expected, actual)) if a != b), 0)
    start = max(0, min(first - 4, len(expected) - width))

    def cut(x: str) -> str:
        return ("…" if start else "") + x[start : start + width] + ("…" if start + width < len(x) else "")

    return cut(expected), cut(actual)


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


# Where distributions install gpgv; never looked up through PATH, which the caller controls.
GPGV_PATHS = ("/usr/bin/gpgv", "/bin/gpgv", "/usr/local/bin/gpgv")


@functools.cache
def gpgv_binary() -> str:
    """The absolute path of gpgv: $VMCOREOS_GPGV if set (absolute only), else the first of GPGV_PATHS."""
    override = os.environ.get(ENV_GPGV)
    if override:
        if not os.path.isabs(override):
            raise ConfigError(f"{ENV_GPGV}={override!r} must be an absolute path to gpgv, like /usr/bin/gpgv")
        candidates: tuple[str, ...] = (override,)
    else:
        candidates = GPGV_PATHS
    for path in candidates:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and os.access(path, os.X_OK):
            return path
    if override:
        raise ConfigError(f"{ENV_GPGV}={override} is not an executable file; point it at gpgv or unset it")
    raise ConfigError("gpgv is not installed in /usr/bin; install it (Debian: apt-get install gpgv) or set " + ENV_GPGV)


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
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "GNUPGHOME": self._dir}
        self._proc = subprocess.Popen(
            [gpgv_binary(), "--status-fd", "1", "--keyring", str(keyring), str(sig), "-"],
            stdin=subprocess.PIPE,
            stdout=self._status,
            stderr=self._log,
            env=env,
        )
        with contextlib.suppress(OSError):  # a bigger pipe: fewer wake-ups for gpgv's small reads
            fcntl.fcntl(self._proc.stdin.fileno(), _F_SETPIPE_SZ, 1 << 20)
        self._broken = False
        # A thread keeps gpgv fed while the caller hashes and writes the next chunk.
        # gpgv is the slowest tap; waiting on its pipe would serialise the whole pass.
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._feeder = threading.Thread(target=self._feed, name="gpgv-feed", daemon=True)
        self._feeder.start()

    def _feed(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._broken:
                continue  # drain, so update() never blocks on a gpgv that has gone
            try:
                self._proc.stdin.write(chunk)
            except OSError:
                # gpgv gave up early (e.g. an unusable signature); finish() reports why.
                self._broken = True
        with contextlib.suppress(OSError):
            self._proc.stdin.close()

    def update(self, chunk: bytes) -> None:
        if not self._broken:
            # The queue keeps a reference until gpgv has it: never hand it a buffer that is reused.
            self._queue.put(chunk if isinstance(chunk, bytes) else bytes(chunk))

    def _stop_feeding(self) -> None:
        if self._feeder.is_alive():
            self._queue.put(None)
            self._feeder.join()

    def finish(self) -> Verdict:
        try:
            self._stop_feeding()
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
        self._stop_feeding()
        self._cleanup()

    def _cleanup(self) -> None:
        for f in (self._status, self._log):
            f.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _judge(self, status: str) -> Verdict:
        return judge(status, self.allowed, self.label)


def judge(status: str, allowed: set[str], label: str) -> Verdict:
    """gpgv's verdict from its --status-fd lines, pinned to the allowed primary fingerprints."""
    lines = [line.split()[1:] for line in status.splitlines() if line.startswith("[GNUPG:] ")]
    words = {w[0]: w[1:] for w in lines if w}
    if "BADSIG" in words:
        raise VerificationError(f"{label}: BAD signature; the image was altered or corrupted, do not use it")
    if "REVKEYSIG" in words:
        raise VerificationError(
            f"{label}: signed by a revoked key {words['REVKEYSIG'][0]}; refusing it as compromised"
        )
    if "ERRSIG" in words:
        fields = words["ERRSIG"]
        keyid = fields[0] if fields else "?"
        if "NO_PUBKEY" in words or (len(fields) > 5 and fields[5] == "9"):
            raise VerificationError(
                f"{label}: signed by unknown key {keyid}; if you trust it, pass --trusted-key with its public key"
            )
        raise VerificationError(f"{label}: signature could not be checked (gpgv error for key {keyid})")
    if "NODATA" in words or "VALIDSIG" not in words:
        raise VerificationError(f"{label}: the signature file is empty, truncated or not a signature")
    valid = words["VALIDSIG"]
    primary = valid[-1].upper()
    if primary not in allowed:
        raise VerificationError(
            f"{label}: signed by key {primary}, which is not pinned for this distro;"
            " pass --trusted-key if you trust it"
        )
    return Verdict(primary, valid[0], "EXPKEYSIG" in words)


def verify_detached(data: bytes, signature: bytes, keys: list[PublicKey], label: str) -> Verdict:
    """A small file (a DIGESTS) against its binary detached signature."""
    check = SignatureCheck(signature, keys, label)
    check.update(data)
    return check.finish()


def verify_clearsigned(signed: bytes, keys: list[PublicKey], label: str) -> tuple[Verdict, bytes]:
    """A clearsigned file (a DIGESTS.asc): the verdict and the text that was signed, as gpgv wrote it out.

    Only gpgv's output is trusted: lines around the signed block are not covered by the signature.
    """
    if not keys:
        raise ConfigError(f"{label}: no key to verify it with; pass --trusted-key FILE")
    with tempfile.TemporaryDirectory(prefix="vmcoreos-gpgv-") as tmp:
        keyring = Path(tmp, "keyring.gpg")
        keyring.write_bytes(b"".join(dict.fromkeys(k.data for k in keys)))
        Path(tmp, "signed.asc").write_bytes(signed)
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "GNUPGHOME": tmp}
        # cwd=tmp: gpgv looks for a file named like the .asc without its suffix and must find none.
        try:
            proc = subprocess.run(
                [gpgv_binary(), "--status-fd", "1", "--keyring", str(keyring), "--output", "signed.txt", "signed.asc"],
                capture_output=True, cwd=tmp, env=env, timeout=60,
            )
        except subprocess.TimeoutExpired:
            raise VerificationError(f"{label}: gpgv did not finish within 60s") from None
        verdict = judge(proc.stdout.decode("utf-8", "replace"), {k.fingerprint for k in keys}, label)
        signed_text = Path(tmp, "signed.txt")
        if proc.returncode != 0 or not signed_text.is_file():
            raise VerificationError(f"{label}: gpgv refused the clearsigned file (exit {proc.returncode})")
        return verdict, signed_text.read_bytes()


_DIGEST_LENGTHS = {"MD5": 32, "SHA1": 40, "SHA256": 64, "SHA512": 128}
_DIGEST_HEADER = re.compile(r"^# ([A-Z0-9]+) HASH$")
_DIGEST_LINE = re.compile(r"^([0-9a-fA-F]+) [ *](.+)$")


def parse_digests(text: str, where: str) -> dict[str, dict[str, str]]:
    """A vendor DIGESTS file: {file name: {"SHA512": hex, ...}}.

    Blocks of `# <TYPE> HASH` followed by coreutils lines `<hex>  <name>`
    (coreos/scripts make_digests, flatcar/scripts create_digests).
    """
    found: dict[str, dict[str, str]] = {}
    algo = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        header = _DIGEST_HEADER.match(line)
        if header:
            algo = header.group(1)
            continue
        entry = _DIGEST_LINE.match(line)
        if algo is None or entry is None:
            raise VerificationError(f"{where} line {number} is not a DIGESTS line; refusing it")
        digest, name = entry.group(1).lower(), entry.group(2)
        if algo in _DIGEST_LENGTHS and len(digest) != _DIGEST_LENGTHS[algo]:
            raise VerificationError(f"{where} line {number}: a {algo} digest has {_DIGEST_LENGTHS[algo]} hex digits")
        known = found.setdefault(name, {})
        if known.get(algo, digest) != digest:
            raise VerificationError(f"{where} lists two different {algo} digests for {name}; refusing it")
        known[algo] = digest
    return found
