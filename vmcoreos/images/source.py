"""Getting a verified OVA onto local disk: a local path, a URL, or (images issue) a channel.

Whatever the source, the result is a file whose signature was checked in the
same pass that read or downloaded it; nothing unverified reaches vSphere.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import requests

from vmcoreos.errors import ConfigError, DownloadError, VerificationError
from vmcoreos.images import keys as keymod
from vmcoreos.images.stream import pump
from vmcoreos.images.verify import Check, Sha512Tap, SignatureCheck, Verdict
from vmcoreos.settings import ImageSettings

TIMEOUT = (10, 60)  # connect, read: no network call waits forever


@dataclass(frozen=True)
class VerifiedImage:
    path: Path
    distro: str
    version: str
    sha512: str
    size: int
    verdict: Verdict | None  # None only with --insecure-skip-verify


def is_url(source: str) -> bool:
    return "://" in source


def signing_keys(image: ImageSettings) -> list[keymod.PublicKey]:
    found = []
    pinned = keymod.pinned_key(image.distro)
    if pinned is not None:
        found.append(pinned)
    found.extend(keymod.trusted_keys(image.trusted_keys))
    return found


def read_small(source: str, what: str, limit: int = 1 << 20) -> bytes:
    if is_url(source):
        try:
            resp = requests.get(source, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise DownloadError(f"cannot fetch {what} {source}: {_reason(exc)}") from None
        if resp.status_code != 200:
            raise DownloadError(f"cannot fetch {what} {source}: HTTP {resp.status_code}")
        data = resp.content
    else:
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"{what} {source} does not exist") from None
    if len(data) > limit:
        raise VerificationError(f"{what} {source} is {len(data)} bytes, too large to be what it claims")
    return data


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    return text.split("(")[0].strip() or type(exc).__name__


def verify_local_ova(image: ImageSettings, *, version: str | None = None) -> VerifiedImage:
    """Check a local OVA (from --ova) against its detached signature in one read."""
    assert image.ova
    path = Path(image.ova)
    if not path.is_file():
        raise ConfigError(f"OVA {path} does not exist; check --ova or image.ova")
    checks: list[Check] = []
    sha = Sha512Tap()
    sig_check = _signature_check(image, path.name)
    if sig_check is not None:
        checks.append(sig_check)
    checks.append(sha)
    try:
        with path.open("rb") as f:
            size = pump(f, checks)
    except BaseException:
        for c in checks:
            c.abort()
        raise
    verdict = sig_check.finish() if sig_check is not None else None
    sha.finish()
    return VerifiedImage(path, image.distro, version or f"local-{sha.hexdigest[:12]}", sha.hexdigest, size, verdict)


def _signature_check(image: ImageSettings, label: str) -> SignatureCheck | None:
    if image.insecure_skip_verify:
        return None
    sig_source = image.sig or (image.ova + ".sig" if image.ova else None)
    if sig_source is None:
        raise ConfigError(f"{label}: no signature given; pass --sig FILE (or --insecure-skip-verify, not advised)")
    if not is_url(sig_source) and not Path(sig_source).exists():
        raise VerificationError(
            f"{label}: signature {sig_source} not found; pass --sig with the OVA's .sig file"
            " (or --insecure-skip-verify, not advised)"
        )
    signature = read_small(sig_source, "signature")
    return SignatureCheck(signature, signing_keys(image), label)


def download_verified(image: ImageSettings, url: str, dest_dir: Path) -> VerifiedImage:
    """Stream a URL to disk, verifying in the same pass; rename into place only when it checks out."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = url.rstrip("/").rsplit("/", 1)[-1] or "image.ova"
    final = dest_dir / name
    sig_check = _signature_check(image, name)
    sha = Sha512Tap()
    checks: list[Check] = [c for c in (sig_check, sha) if c is not None]
    fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".part", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with requests.get(url, stream=True, timeout=TIMEOUT) as resp:
                    if resp.status_code != 200:
                        raise DownloadError(f"cannot download {url}: HTTP {resp.status_code}")
                    size = pump(resp.raw, checks, sink=out)
            except requests.RequestException as exc:
                raise DownloadError(f"cannot download {url}: {_reason(exc)}") from None
        verdict = sig_check.finish() if sig_check is not None else None
        sha.finish()
        os.replace(tmp, final)
    except BaseException:
        for c in checks:
            c.abort()
        Path(tmp).unlink(missing_ok=True)
        raise
    return VerifiedImage(final, image.distro, f"url-{sha.hexdigest[:12]}", sha.hexdigest, size, verdict)
