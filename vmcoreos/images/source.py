"""What every image source yields: a VerifiedImage, a file whose checks all passed.

The sources themselves (a release channel, a URL, a local path) and the
one-pass verification live in vmcoreos.images.fetch; obtain() there is the
entry point.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vmcoreos.images.verify import Verdict


@dataclass(frozen=True)
class VerifiedImage:
    path: Path
    distro: str
    version: str  # the release version for channels (e.g. "4593.2.5"); local-/url-<sha512 prefix> otherwise
    sha512: str
    size: int
    verdict: Verdict | None  # None only with --insecure-skip-verify
    channel: str = ""
    source: str = ""  # where it came from, without credentials
    cached: bool = False  # reused from the cache after re-verification, not downloaded this run


def is_url(source: str) -> bool:
    return "://" in source
