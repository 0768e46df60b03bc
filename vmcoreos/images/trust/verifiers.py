"""The two OpenPGP verifiers we run, how we find them, and how we read what they say.

gpgv (GnuPG's, what apt uses) reports through --status-fd. sqv (Sequoia's,
Debian's package `sqv`) prints the fingerprint of each certificate with a
valid signature and says why on stderr otherwise. sqv reads a pipe about
twice as fast as gpgv (1.0 s against 2.2 s per GiB here), which is what a
streamed import waits on. Which of the two judges a signature is decided in
signature.py; both answers end in the same Verdict or refusal.

Both are found only at absolute paths, never through PATH, which the caller
controls.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vmcoreos.errors import ConfigError, VerificationError
from vmcoreos.environment import ENV_GPGV, ENV_SQV, value as env_value

GPGV_PATHS = ("/usr/bin/gpgv", "/bin/gpgv", "/usr/local/bin/gpgv")
SQV_PATHS = ("/usr/bin/sqv", "/bin/sqv", "/usr/local/bin/sqv")


@dataclass(frozen=True)
class Verdict:
    primary_fingerprint: str
    signing_key: str
    expired_key: bool
    verifier: str = ""  # "sqv" or "gpgv"; "" for a verdict read back from a record


def _executable(path: str) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) and os.access(path, os.X_OK)


@functools.cache
def gpgv_binary() -> str:
    """The absolute path of gpgv: $VMCOREOS_GPGV if set (absolute only), else the first of GPGV_PATHS."""
    override = env_value(ENV_GPGV)
    if override:
        if not os.path.isabs(override):
            raise ConfigError(f"{ENV_GPGV}={override!r} must be an absolute path to gpgv, like /usr/bin/gpgv")
        if _executable(override):
            return override
        raise ConfigError(f"{ENV_GPGV}={override} is not an executable file; point it at gpgv or unset it")
    for path in GPGV_PATHS:
        if _executable(path):
            return path
    raise ConfigError("gpgv is not installed in /usr/bin; install it (Debian: apt-get install gpgv) or set " + ENV_GPGV)


@functools.cache
def sqv_binary() -> str | None:
    """The absolute path of sqv, or None to leave every signature to gpgv.

    $VMCOREOS_SQV: an absolute path, or "off". Without it, the first of SQV_PATHS; none installed
    is not an error (gpgv judges everything, only slower).
    """
    override = env_value(ENV_SQV)
    if override:
        if override.lower() == "off":
            return None
        if not os.path.isabs(override):
            raise ConfigError(f"{ENV_SQV}={override!r} must be an absolute path to sqv, like /usr/bin/sqv, or off")
        if _executable(override):
            return override
        raise ConfigError(f"{ENV_SQV}={override} is not an executable file; point it at sqv, set it to off, or unset it")
    return next((p for p in SQV_PATHS if _executable(p)), None)


def environment(home: str) -> dict[str, str]:
    """All a verifier is given of ours: a fixed PATH and locale, and a private, throwaway GnuPG home."""
    return {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "GNUPGHOME": home}


def gpgv_command(keyring: Path, signature: Path) -> list[str]:
    return [gpgv_binary(), "--status-fd", "1", "--keyring", str(keyring), str(signature), "-"]


def sqv_command(binary: str, keyring: Path, signature: Path) -> list[str]:
    # /dev/stdin, not "-": sqv 1.1 takes "-" for a file name. From a pipe it reads in small
    # buffers (5 MB resident); given the image's own path it would map the whole file.
    return [binary, "--keyring", str(keyring), str(signature), "/dev/stdin"]


def judge_gpgv(status: str, allowed: set[str], label: str) -> Verdict:
    """gpgv's verdict from its --status-fd lines, pinned to the allowed primary fingerprints."""
    lines = [line.split()[1:] for line in status.splitlines() if line.startswith("[GNUPG:] ")]
    words = {w[0]: w[1:] for w in lines if w}
    if "BADSIG" in words:
        raise bad_signature(label)
    if "REVKEYSIG" in words:
        raise revoked(label, words["REVKEYSIG"][0])
    if "ERRSIG" in words:
        fields = words["ERRSIG"]
        keyid = fields[0] if fields else "?"
        if "NO_PUBKEY" in words or (len(fields) > 5 and fields[5] == "9"):
            raise unknown_key(label, keyid)
        raise VerificationError(f"{label}: signature could not be checked (gpgv error for key {keyid})")
    if "NODATA" in words or "VALIDSIG" not in words:
        raise not_a_signature(label)
    valid = words["VALIDSIG"]
    primary = valid[-1].upper()
    if primary not in allowed:
        raise not_pinned(label, primary)
    return Verdict(primary, valid[0], "EXPKEYSIG" in words, "gpgv")


_FINGERPRINT = re.compile(r"[0-9A-F]{40}")


def judge_sqv(returncode: int, stdout: str, stderr: str, allowed: set[str], label: str) -> str:
    """The primary fingerprint sqv vouches for, or the refusal its exit status and words call for."""
    if returncode == 0:
        found = [line.strip().upper() for line in stdout.splitlines() if line.strip()]
        if len(found) != 1 or not _FINGERPRINT.fullmatch(found[0]):
            raise VerificationError(f"{label}: sqv gave an answer that is not one fingerprint; refusing the image")
        if found[0] not in allowed:
            raise not_pinned(label, found[0])
        return found[0]
    # Its words pick the message only: any exit status but 0 is a refusal.
    if "manipulated" in stderr:
        raise bad_signature(label)
    missing = re.search(r"Missing key ([0-9A-F]{16,40})", stderr)
    if missing:
        raise unknown_key(label, missing.group(1))
    if "revoked" in stderr:
        raise revoked(label, "?")
    if "Malformed" in stderr or "Truncated" in stderr:
        raise not_a_signature(label)
    if "not bound" in stderr or "not alive" in stderr or "expired" in stderr:
        raise VerificationError(f"{label}: signed at a time its key was not valid (expired or not yet bound); refusing it")
    first = next((line for line in stderr.splitlines() if line.strip()), f"exit status {returncode}")
    reason = "".join(c if c.isprintable() else "?" for c in first.strip())[:160]
    raise VerificationError(f"{label}: signature could not be checked (sqv: {reason})")


def bad_signature(label: str) -> VerificationError:
    return VerificationError(f"{label}: BAD signature; the image was altered or corrupted, do not use it")


def revoked(label: str, keyid: str) -> VerificationError:
    return VerificationError(f"{label}: signed by a revoked key {keyid}; refusing it as compromised")


def unknown_key(label: str, keyid: str) -> VerificationError:
    return VerificationError(f"{label}: signed by unknown key {keyid}; if you trust it, pass --trusted-key with its public key")


def not_a_signature(label: str) -> VerificationError:
    return VerificationError(
        f"{label}: the signature file is empty, truncated or not a signature; pass the image's own detached .sig with --sig"
    )


def not_pinned(label: str, primary: str) -> VerificationError:
    return VerificationError(
        f"{label}: signed by key {primary}, which is not pinned for this distro; pass --trusted-key if you trust it"
    )


def signed_after_expiry(label: str, keyid: str, signed: int, expired: int) -> VerificationError:
    day = lambda t: time.strftime("%Y-%m-%d", time.gmtime(t))  # noqa: E731
    return VerificationError(
        f"{label}: signed on {day(signed)} by subkey {keyid}, which had expired on {day(expired)}; refusing it"
    )


def verify_clearsigned(signed: bytes, keyring: bytes, allowed: set[str], label: str) -> tuple[Verdict, bytes]:
    """A clearsigned file (a DIGESTS.asc) through gpgv: the verdict and the text that was signed, as gpgv wrote it.

    Only gpgv's output is trusted: lines around the signed block are not covered by the signature.
    sqv 1.1 checks detached signatures only.
    """
    with tempfile.TemporaryDirectory(prefix="vmcoreos-gpgv-") as tmp:
        Path(tmp, "keyring.gpg").write_bytes(keyring)
        Path(tmp, "signed.asc").write_bytes(signed)
        # cwd=tmp: gpgv looks for a file named like the .asc without its suffix and must find none.
        try:
            proc = subprocess.run(
                [gpgv_binary(), "--status-fd", "1", "--keyring", "keyring.gpg", "--output", "signed.txt", "signed.asc"],
                capture_output=True, cwd=tmp, env=environment(tmp), timeout=60,
            )
        except subprocess.TimeoutExpired:
            raise VerificationError(f"{label}: gpgv did not finish within 60s") from None
        verdict = judge_gpgv(proc.stdout.decode("utf-8", "replace"), allowed, label)
        signed_text = Path(tmp, "signed.txt")
        if proc.returncode != 0 or not signed_text.is_file():
            raise VerificationError(f"{label}: gpgv refused the clearsigned file (exit {proc.returncode})")
        return verdict, signed_text.read_bytes()
