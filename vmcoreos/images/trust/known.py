"""Images verified before: knowing a file's SHA-512 and verdict without reading it again.

A record (vmcoreos.state.ImageRecord) vouches only for a file inside the
private cache (an --ova elsewhere is read in full on every run: see inside()),
and for an open file only when
all of these are what they were at its verification: the file's identity
(device, inode, size, mtime_ns, ctime_ns), the SHA-256 of the signature
bytes, the set of trusted primary fingerprints, and the stream metadata's
SHA-256. Any write to the file moves its ctime, which only root can set
back; a replaced file has another inode. A changed signature or key set
is verified again in full.

Racy files, as git has them: a timestamp has a granularity (a kernel tick,
or seconds on some filesystems), so a write in the same tick as the
identity we took could leave ctime as it was. A record whose file changed
less than RACY_NS before it was taken therefore vouches for nothing; the
next use verifies in full and records a settled identity.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import BinaryIO

from vmcoreos import state
from vmcoreos.images.trust import keys as keymod
from vmcoreos.images.verified import identity
from vmcoreos.images.trust.verifiers import Verdict

RACY_NS = 2_000_000_000  # FAT's 2 s timestamps are the coarsest in use


def _signers(signing: list[keymod.PublicKey]) -> tuple[str, ...]:
    return tuple(sorted({k.fingerprint for k in signing}))


def recall(path: Path, f: BinaryIO, signature: bytes | None, signing: list[keymod.PublicKey], *,
           sha256: str | None = None, cache_root: Path | None = None) -> state.ImageRecord | None:
    """The record vouching for the open file f at path, if every input of its verification is unchanged."""
    if signature is None or not inside(path, cache_root):
        return None  # only a signature's verdict is worth remembering, and only for a file in the cache
    record = state.image_record(Path(path).absolute(), cache_root=cache_root)
    if record is None:
        return None
    now = identity(f)
    settled = now[4] < record.recorded_ns - RACY_NS
    same = (
        record.identity == now
        and record.signature_sha256 == hashlib.sha256(signature).hexdigest()
        and record.signers == _signers(signing)
        and record.sha256 == (sha256 or "").lower()
    )
    return record if same and settled else None


def inside(path: Path, cache_root: Path | None) -> bool:
    """Whether path is a file in the private cache. Only there may a record stand in for reading it: whoever
    can write a file elsewhere (shared storage, a group-writable directory) can change its bytes through a
    shared writable mapping without moving mtime or ctime, so its identity no longer says it is unchanged."""
    if cache_root is None:
        return False
    try:
        return Path(path).resolve().is_relative_to(Path(cache_root).resolve())
    except OSError:
        return False


def verdict(record: state.ImageRecord) -> Verdict:
    return Verdict(record.signer, record.signing_key, record.expired_key)


def stamp() -> int:
    """The clock to take just before the identity a record will hold (see RACY_NS)."""
    return time.time_ns()


def remember(path: Path, ident: tuple[int, ...], stamped_ns: int, signature: bytes | None,
             signing: list[keymod.PublicKey], found: Verdict | None, sha512: str, version: str, *,
             sha256: str | None = None, cache_root: Path | None = None) -> None:
    """Record a verification that passed; ident was taken after stamped_ns, from the very descriptor read."""
    if signature is None or found is None or not inside(path, cache_root):
        return
    state.remember_image(Path(path).absolute(), state.ImageRecord(
        ident, stamped_ns, hashlib.sha256(signature).hexdigest(), _signers(signing), (sha256 or "").lower(),
        sha512, version, found.primary_fingerprint, found.signing_key, found.expired_key,
    ), cache_root=cache_root)
