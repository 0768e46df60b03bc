"""What binds an image to the release it is deployed as, beyond its signature.

A good signature says the vendor built these bytes, not which release they
are: every old release's OVA carries a good signature too. A mirror (or
anyone on the path to an http mirror) could serve the newest release's
signed version.txt beside an old release's OVA and .sig, withhold DIGESTS,
and have the old bytes labelled, imported and rolled out as the new release.
So, besides the signatures:

- the OVA's signature must have been made within WINDOW of the signature of
  the version.txt that names its release (and of its DIGESTS), either way:
  the vendor's build signs all of a release's files in the same job
  (coreos-facts.md §2.2a), while an older release's files carry that older
  build's times. Without a signed DIGESTS the window is STRICT_WINDOW, and an
  image whose release label is unsigned or unknown is refused outright;
- a SHA-512 already recorded (in this host's cache, or on the cluster's
  nodes) under another version is refused: one image is one release;
- an image whose signature is older than that of the image the nodes run
  is refused unless image.version pins a release on purpose.

The signature times are the signer's own claims (hashed subpackets covered
by the signatures gpgv and sqv check): they order the vendor's releases,
and prove nothing against the key holder.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from vmcoreos.errors import VerificationError
from vmcoreos.images.trust import openpgp
from vmcoreos.images.trust.keys import dearmor

HOUR = 3600
# The facts (coreos-facts.md §2.2a) say "the same build; not weeks apart", and give no measured spread;
# no vendor mirror is reachable from here to measure one. A Flatcar build signs version.txt with the
# image job and the OVA with the vms job of the same pipeline, hours apart at most; a release every
# ~2 weeks per channel. Three days leaves a stalled pipeline room and still refuses the previous release.
WINDOW = 72 * HOUR
STRICT_WINDOW = 36 * HOUR  # no DIGESTS: only the signature times bind the OVA to its release

_ARMOR = re.compile(rb"-----BEGIN PGP SIGNATURE-----.*?-----END PGP SIGNATURE-----", re.S)


def signature_time(signature: bytes | None) -> int | None:
    """When a detached (binary or armored) or clearsigned signature says it was made; None if it says not."""
    if not signature:
        return None
    data = signature
    found = _ARMOR.search(signature)
    if found is not None:
        try:
            data = dearmor(found.group(0).decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return None
    try:
        return openpgp.read_detached_signature(data).created
    except (ValueError, IndexError):
        return None


def _day(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


@dataclass(frozen=True)
class Deployed:
    """What the cluster's nodes run, from their marks: the floor an image may not go below."""

    version: str | None = None  # the highest numbered release on the nodes
    signed: int | None = None  # the newest signature time of an image the nodes run
    images: Mapping[str, str] = field(default_factory=dict)  # SHA-512 -> the version it was deployed as


def check_window(label: str, image_signed: int | None, *, label_signed: int | None, label_what: str,
                 digests_signed: int | None, digests: bool, version: str) -> None:
    """The OVA's signature made within the window of its release label's (and DIGESTS') signatures."""
    window = WINDOW if digests else STRICT_WINDOW
    if image_signed is None:
        raise VerificationError(f"{label}: its signature carries no creation time, so it cannot be bound to"
                                f" release {version}; refusing it")
    if label_signed is None and not digests:
        raise VerificationError(
            f"{label}: release {version} has no signed DIGESTS and no signed version.txt, so nothing binds this"
            " OVA to that release; publish the release's DIGESTS and version.txt with their signatures on the mirror"
        )
    for other, what in ((label_signed, label_what), (digests_signed, "its DIGESTS")):
        if other is not None and abs(image_signed - other) > window:
            raise VerificationError(
                f"{label}: signed {_day(image_signed)}, but {what} for release {version} was signed {_day(other)},"
                f" more than {window // HOUR} h apart (one release's files are signed by one build); the server"
                " mixes releases, refusing it"
            )


def check_one_version(label: str, sha512: str, version: str, recorded: Iterable[tuple[str, str, str]]) -> None:
    """Refuse bytes already recorded under another version: (sha512, version, where) triples."""
    for sha, other, where in recorded:
        if sha.lower() == sha512.lower() and other and other != version:
            raise VerificationError(
                f"{label}: these exact bytes (SHA-512 {sha512[:16]}…) are recorded {where} as {other}, not {version};"
                " the server relabels an old release, refusing it"
            )


def check_not_older(label: str, image_signed: int | None, deployed: Deployed | None, pinned: bool) -> None:
    """Never onto an image signed before the one the nodes run, unless a version is pinned on purpose."""
    if pinned or deployed is None or deployed.signed is None or image_signed is None:
        return
    if image_signed < deployed.signed:
        raise VerificationError(
            f"{label}: signed {_day(image_signed)}, before the image the cluster's nodes run ({_day(deployed.signed)});"
            " refusing to go back (pin image.version, or --version, to do it on purpose)"
        )
