"""The image cache: `<cache>/<distro>/<channel>[@<mirror>]/<version>/<file>` with its signature and a JSON record.

An entry counts only once its record exists, and the record is written
last, after the image and its signature are in place; anything else in an
entry's directory is a leftover and is discarded. One lock per entry (in
`<cache>/.locks/`) keeps two runs from downloading the same image at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from vmcoreos.errors import ConfigError, LockedError
from vmcoreos import environment

LOCKS = ".locks"
RECORD_SUFFIX = ".json"
PART_SUFFIX = ".part"
LOCK_WAIT = 3600.0  # seconds to wait for another run fetching the same image
SOURCE_SEP = "@"  # <channel>@<mirror id>: the same version from two servers is two entries


def default_cache_dir(environ=None) -> Path:
    return environment.cache_dir(environ=environ)


@dataclass(frozen=True)
class Entry:
    root: Path
    distro: str
    channel: str
    version: str  # a release version, or a hash of the URL for --ova URLs
    file: str
    source: str = ""  # "" for the vendor's host; a mirror's id keeps its images apart from the vendor's

    @property
    def channel_dir(self) -> Path:
        return self.root / self.distro / (f"{self.channel}{SOURCE_SEP}{self.source}" if self.source else self.channel)

    @property
    def dir(self) -> Path:
        return self.channel_dir / self.version

    @property
    def path(self) -> Path:
        return self.dir / self.file

    @property
    def part(self) -> Path:
        return self.dir / (self.file + PART_SUFFIX)

    @property
    def sig(self) -> Path:
        return self.dir / (self.file + ".sig")

    @property
    def record_path(self) -> Path:
        return self.dir / (self.file + RECORD_SUFFIX)

    @contextlib.contextmanager
    def locked(self, reporter, timeout: float = LOCK_WAIT) -> Iterator[None]:
        lock_dir = self.root / LOCKS
        lock_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_dir / f"{self.distro}--{self.channel_dir.name}--{self.version}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            reporter.event(f"another vmcoreos run is fetching {self.file} ({self.version}); waiting for it")
            try:
                lock.acquire(timeout=timeout)
            except Timeout:
                raise LockedError(
                    f"another vmcoreos run has been fetching {self.file} into {self.dir} for {timeout:.0f}s;"
                    " wait for it or stop it"
                ) from None
        try:
            yield
        finally:
            lock.release()

    def read_record(self) -> dict | None:
        try:
            record = json.loads(self.record_path.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def write_record(self, record: dict) -> None:
        tmp = self.record_path.with_name(self.record_path.name + PART_SUFFIX)
        write_file(tmp, (json.dumps(record, indent=2) + "\n").encode("utf-8"))
        os.replace(tmp, self.record_path)

    def prepare(self) -> None:
        """An empty entry directory: leftovers of an interrupted run cannot be resumed without a second read."""
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)

    def discard(self) -> None:
        """Delete the entry (image, signature, record, partial download) and any directories it leaves empty."""
        shutil.rmtree(self.dir, ignore_errors=True)
        parent = self.dir.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent


def entry_for(root: Path, distro: str, channel: str, version: str, file: str, source: str = "") -> Entry:
    return Entry(Path(root), distro, channel, version, file, source)


def write_file(path: Path, data: bytes) -> None:
    """Write a cache file without following a symlink someone planted in its place."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def check_root(root: Path) -> Path:
    """The cache root, created private if missing; refused if another user could swap images in it."""
    root = Path(root)
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = root.stat()
    except OSError as exc:
        raise ConfigError(f"cannot use cache directory {root}: {exc.strerror}; pass --cache-dir with a writable directory") from None
    if st.st_uid != os.getuid():
        raise ConfigError(
            f"cache directory {root} belongs to uid {st.st_uid}, not you; its owner could swap images in it:"
            f" pass --cache-dir with a directory of your own"
        )
    if st.st_mode & 0o022:
        raise ConfigError(
            f"cache directory {root} is writable by group or others, who could swap images in it;"
            f" run chmod go-w {root} or pass --cache-dir with a private directory"
        )
    return root


def highest_version(root: Path, distro: str, channel: str, source: str, key) -> str | None:
    """The highest release version with a verified record in one channel's cache (key orders versions)."""
    best = None
    directory = Entry(Path(root), distro, channel, "", "", source).channel_dir
    for record_path in directory.glob("*/*" + RECORD_SUFFIX):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        version = record.get("version") if isinstance(record, dict) and record.get("signer") else None
        if key(version) is not None and (best is None or key(version) > key(best)):
            best = version
    return best


def url_key(url: str) -> str:
    """The cache directory for an OVA given by URL: its version is unknown until it is verified."""
    return "url-" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class CachedImage:
    distro: str
    channel: str
    version: str
    size: int
    state: str  # verified / unverified / changed / missing / incomplete
    path: Path
    signer: str | None = None
    verified_at: str | None = None
    source: str | None = None

    def as_dict(self) -> dict:
        return {
            "distro": self.distro, "channel": self.channel, "version": self.version, "size": self.size,
            "state": self.state, "path": str(self.path), "signer": self.signer, "verified_at": self.verified_at,
            "source": self.source,
        }


def list_cached(root: Path) -> list[CachedImage]:
    """What the cache holds, judged from the records and file sizes (no image is read)."""
    found = []
    root = Path(root)
    for directory in sorted(p for p in root.glob("*/*/*") if p.is_dir() and not p.parts[-3].startswith(".")):
        distro, channel, version = directory.parts[-3:]
        channel = channel.split(SOURCE_SEP, 1)[0]
        records = sorted(directory.glob("*" + RECORD_SUFFIX))
        for record_path in records:
            image = record_path.with_name(record_path.name[: -len(RECORD_SUFFIX)])
            try:
                record = json.loads(record_path.read_text())
            except (OSError, ValueError):
                record = {}
            size = image.stat().st_size if image.is_file() else 0
            if not image.is_file():
                state = "missing"
            elif size != record.get("size"):
                state = "changed"
            elif not record.get("signer"):
                state = "unverified"
            else:
                state = "verified"
            found.append(CachedImage(
                distro, channel, str(record.get("version") or version), size, state, image,
                record.get("signer"), record.get("verified"), record.get("source"),
            ))
        if not records:
            for part in directory.glob("*" + PART_SUFFIX):
                found.append(CachedImage(distro, channel, version, part.stat().st_size, "incomplete", part))
    return found


def recorded_images(root: Path, distro: str) -> list[tuple[str, str]]:
    """(SHA-512, version) of every verified release image of a distro in the cache, any channel or mirror."""
    found = []
    for record_path in Path(root, distro).glob("*/*/*" + RECORD_SUFFIX):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict) or not record.get("signer"):
            continue
        version = record.get("version")
        # An image by URL is labelled by its own SHA-512 (url-...): that names no release.
        if record.get("sha512") and version and not str(version).startswith(("url-", "local-")):
            found.append((str(record["sha512"]), str(version)))
    return found
