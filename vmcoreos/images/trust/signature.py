"""Where an image's OpenPGP signature is checked, by which verifier, and under which rules.

The rules, whichever verifier runs:
- the signature must be valid and made by a key whose *primary* fingerprint
  is pinned for the distro or trusted by the user;
- a subkey that has expired since is accepted (old releases stay
  verifiable) and noted, but only for a signature made before the expiry;
- a revoked subkey is refused, whenever it signed;
- an unknown key, a bad signature and a signature file that is not one are
  refused, each with its own message.

sqv judges when it can judge the way gpgv does: a version 4 signature whose
own hash and the self-signatures it rests on are all SHA-2. Sequoia's policy
refuses SHA-1 in places gpgv accepts it (the CoreOS key's user ID and its
first subkeys are bound with SHA-1), so those go to gpgv, as does every
signature when sqv is not installed. The choice is made from the signature
file and the keyring before any image byte is read.
"""

from __future__ import annotations

import contextlib
import fcntl
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from vmcoreos.errors import ConfigError, VerificationError
from vmcoreos.images.trust import openpgp, verifiers
from vmcoreos.images.trust.keys import PublicKey, dearmor
from vmcoreos.images.trust.verifiers import Verdict
from vmcoreos.images.trust.digests import Check

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux only; elsewhere the fcntl call just fails


def choose_verifier(info: openpgp.SignatureInfo | None, signer: openpgp.SigningKey | None, sqv: str | None) -> str:
    """ "sqv" or "gpgv" for one signature: sqv only where its policy and ours agree."""
    if sqv is None or info is None:
        return "gpgv"  # not installed; or a signature we cannot read, which gpgv names in its own words
    if signer is None and info.issuer_fingerprint is None and info.issuer_keyid is None:
        return "gpgv"  # names no issuer: gpgv tries every key and says which one signed
    if info.hash_algo not in openpgp.SHA2:
        return "gpgv"
    if signer is not None and not signer.binding_hashes <= openpgp.SHA2:
        return "gpgv"
    return "sqv"


def _binary(signature: bytes) -> bytes:
    """An ASCII-armored signature (.asc) as its packets; both verifiers read either form themselves."""
    if not signature.lstrip().startswith(b"-----BEGIN PGP SIGNATURE"):
        return signature
    try:
        return dearmor(signature.decode("ascii"))
    except (UnicodeDecodeError, ValueError):  # binascii.Error is a ValueError
        raise ValueError("not an armored signature") from None


def keyring_of(keys: list[PublicKey]) -> bytes:
    return b"".join(dict.fromkeys(k.data for k in keys))


class SignatureCheck(Check):
    """Streams the data into the chosen verifier against a private keyring; the verdict comes from finish()."""

    def __init__(self, signature: bytes, keys: list[PublicKey], label: str):
        if not keys:
            raise ConfigError(f"{label}: no key to verify it with; pass --trusted-key FILE")
        self.label = label
        self.allowed = {k.fingerprint for k in keys}
        keyring = keyring_of(keys)
        # Exactly one version 4 signature packet, binary or armored from its first byte: anything else
        # (two packets, junk before the armor) is refused here, never left to a verifier alone, which
        # would judge it by rules of its own (gpgv takes the first good packet and EXPKEYSIG).
        unreadable = None
        try:
            packets = _binary(signature)
            self.info: openpgp.SignatureInfo | None = openpgp.read_detached_signature(packets)
            self.signer = openpgp.signer_of(self.info, keyring)
        except (ValueError, IndexError):
            packets, self.info, self.signer = signature, None, None
            unreadable = verifiers.not_a_signature(label)
        sqv = verifiers.sqv_binary()
        self.verifier = choose_verifier(self.info, self.signer, sqv)
        # A refusal the signature and keyring alone decide; still given only by finish().
        self._refusal = unreadable or self._decided_before_reading()
        self._proc: subprocess.Popen | None = None
        self._dir = tempfile.mkdtemp(prefix="vmcoreos-verify-")
        self._out = open(Path(self._dir, "out"), "w+b")
        self._err = open(Path(self._dir, "err"), "w+b")
        self._broken = self._refusal is not None
        if self._refusal is None:
            try:
                self._start(packets, keyring, sqv)
            except BaseException:  # gpgv missing, say: nothing of ours is left behind
                self._cleanup()
                raise
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._feeder = threading.Thread(target=self._feed, name="verify-feed", daemon=True)
        self._feeder.start()

    def _decided_before_reading(self) -> VerificationError | None:
        info, signer = self.info, self.signer
        if info is None or signer is None:
            if info is not None and self.verifier == "sqv":
                return verifiers.unknown_key(self.label, info.issuer_fingerprint or info.issuer_keyid or "?")
            return None  # the verifier names it
        if signer.revoked:
            return verifiers.revoked(self.label, signer.keyid)
        if info.created is not None and signer.expires is not None and info.created > signer.expires:
            # gpgv would accept it (EXPKEYSIG) and sqv would not; the rule is ours, for both.
            return verifiers.signed_after_expiry(self.label, signer.keyid, info.created, signer.expires)
        return None

    def _start(self, signature: bytes, keyring: bytes, sqv: str | None) -> None:
        ring, sig = Path(self._dir, "keyring.gpg"), Path(self._dir, "image.sig")
        ring.write_bytes(keyring)
        sig.write_bytes(signature)
        if self.verifier == "sqv":
            command = verifiers.sqv_command(sqv, ring, sig)
        else:
            command = verifiers.gpgv_command(ring, sig)
        self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=self._out, stderr=self._err,
                                      env=verifiers.environment(self._dir))
        with contextlib.suppress(OSError):  # a bigger pipe: fewer wake-ups for the verifier's small reads
            fcntl.fcntl(self._proc.stdin.fileno(), _F_SETPIPE_SZ, 1 << 20)

    def _feed(self) -> None:
        # A thread keeps the verifier fed while the caller hashes and writes the next chunk:
        # waiting on its pipe would serialise the whole pass behind the slowest tap.
        while (chunk := self._queue.get()) is not None:
            if self._broken:
                continue  # drain, so update() never blocks on a verifier that has gone
            try:
                self._proc.stdin.write(chunk)
            except OSError:
                self._broken = True  # it gave up early (e.g. an unusable signature); finish() says why
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()

    def update(self, chunk: bytes) -> None:
        if not self._broken:
            # The queue keeps a reference until the verifier has it: never hand it a buffer that is reused.
            self._queue.put(chunk if isinstance(chunk, bytes) else bytes(chunk))

    def _stop_feeding(self) -> None:
        if self._feeder.is_alive():
            self._queue.put(None)
            self._feeder.join()

    def finish(self) -> Verdict:
        try:
            self._stop_feeding()
            if self._refusal is not None:
                raise self._refusal
            returncode = self._proc.wait()
            self._out.seek(0)
            self._err.seek(0)
            out = self._out.read().decode("utf-8", "replace")
            if self.verifier == "gpgv":
                verdict = verifiers.judge_gpgv(out, self.allowed, self.label)
                if self.signer is not None and verdict.signing_key.upper() != self.signer.fingerprint:
                    raise VerificationError(f"{self.label}: gpgv names another signing key than the signature does")
                return verdict
            err = self._err.read().decode("utf-8", "replace")
            primary = verifiers.judge_sqv(returncode, out, err, self.allowed, self.label)
            if primary != self.signer.primary:
                raise VerificationError(f"{self.label}: sqv vouches for another key than the signature names")
            return Verdict(primary, self.signer.fingerprint, self.signer.expired(), "sqv")
        finally:
            self._cleanup()

    def abort(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._stop_feeding()
        self._cleanup()

    def _cleanup(self) -> None:
        for f in (self._out, self._err):
            f.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def verify_detached(data: bytes, signature: bytes, keys: list[PublicKey], label: str) -> Verdict:
    """A small file (a DIGESTS) against its binary detached signature."""
    check = SignatureCheck(signature, keys, label)
    check.update(data)
    return check.finish()


def verify_clearsigned(signed: bytes, keys: list[PublicKey], label: str) -> tuple[Verdict, bytes]:
    """A clearsigned file (a DIGESTS.asc): the verdict and the text that was signed."""
    if not keys:
        raise ConfigError(f"{label}: no key to verify it with; pass --trusted-key FILE")
    return verifiers.verify_clearsigned(signed, keyring_of(keys), {k.fingerprint for k in keys}, label)
