"""What every image source yields: a VerifiedImage, a file whose checks all passed.

The sources themselves (a release channel, a URL, a local path) live in
vmcoreos.images.fetch, whose obtain() is the entry point; the one-pass
verification in vmcoreos.images.verification.

A VerifiedImage holds the file open: the space check and the upload read
the very descriptor that was verified (images/verified_upload.py upload_read()),
never the path again, so a file swapped in under the same name afterwards is
never read. It is built in one place: images/verification.py. `identity` is the
fstat of that descriptor at verification; OvaArchive.check_unchanged()
compares it before the upload is declared complete.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from vmcoreos.errors import ConfigError
from vmcoreos.images.trust.verifiers import Verdict


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
    file: BinaryIO | None = field(default=None, compare=False, repr=False)  # the verified descriptor
    identity: tuple[int, ...] | None = None  # identity(file) when it was verified
    signed: int | None = None  # when its signature says it was made (epoch; images/trust/binding.py)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def identity(f: BinaryIO) -> tuple[int, ...]:
    """What changes when a file is replaced or written to: device, inode, size, mtime and ctime (ns)."""
    st = os.fstat(f.fileno())
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def open_image(path: Path, what: str = "OVA") -> BinaryIO:
    """Open an image for reading without following a symlink; refuse anything but a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist; check --ova or image.ova") from None
    except OSError as exc:
        if os.path.islink(path):
            raise ConfigError(
                f"{what} {path} is a symlink; pass the real file's path (vmcoreos does not follow links to images)"
            ) from None
        raise ConfigError(f"cannot open {what} {path}: {exc.strerror}") from None
    f = os.fdopen(fd, "rb")
    import stat

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise ConfigError(f"{what} {path} is not a regular file; pass the .ova file itself")
    return f


def is_url(source: str) -> bool:
    return "://" in source
