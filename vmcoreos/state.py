"""What this host remembers between runs: the templates it imported and the images it verified.

vCenter inventory is writable by more people than the operator: anyone
allowed to edit a VM's advanced settings can give it our marks. So a
template counts as ours only if this host recorded its instance UUID and
moref when it imported it. The record lives in `<cache root>/state/`,
beside the image cache it was verified from, as one JSON file written
atomically under a lock (runs for different clusters share it).

Each verified image is remembered by the identity of its file (device,
inode, size, mtime and ctime in ns) and the SHA-256 of the signature bytes
it was checked against, with the keys that were trusted then: a later run
that finds all of them unchanged knows the file's SHA-512 and version
without reading it (vmcoreos.images.trust.known decides when that holds).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from vmcoreos.errors import ConfigError, LockedError

TEMPLATES_FILE = "templates.json"
IMAGES_FILE = "images.json"
LOCK_WAIT = 30.0  # seconds; a write takes milliseconds, so a longer wait means a stuck run


@dataclass(frozen=True)
class TemplateRecord:
    instance_uuid: str
    moref: str
    sha512: str


@dataclass(frozen=True)
class ImageRecord:
    identity: tuple[int, ...]  # vmcoreos.images.verified.identity() of the file when it was verified
    recorded_ns: int  # wall clock just before that identity was taken (racy-file rule, images.known)
    signature_sha256: str  # of the signature bytes it was verified against
    signers: tuple[str, ...]  # the primary fingerprints trusted then, sorted
    sha256: str  # the stream metadata's SHA-256 it was also checked against ("" if none)
    sha512: str
    version: str
    signer: str  # the verdict: primary fingerprint, signing (sub)key, whether that key has expired since
    signing_key: str
    expired_key: bool


def current_user() -> str:
    """This process's user name, for messages that say whose record or lock it is."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container, systemd's PrivateUsers=)
        return f"uid {os.getuid()}"


def state_dir(cache_root: Path | None = None) -> Path:
    from vmcoreos.environment import cache_dir

    return cache_dir(cache_root) / "state"


def _check_private(directory: Path) -> None:
    """The state directory and the cache root above it: whoever can write either can vouch for a template."""
    from vmcoreos.images.cache import check_root

    check_root(directory.parent)
    directory.mkdir(exist_ok=True, mode=0o700)
    st = directory.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise ConfigError(
            f"{directory} is not private (owned by uid {st.st_uid}, mode {st.st_mode & 0o777:o}): whoever can write"
            f" it can vouch for a planted template; run chown $(id -u) {directory} && chmod 700 {directory}"
        )


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    _check_private(directory)
    lock = FileLock(str(directory / (TEMPLATES_FILE + ".lock")))
    try:
        lock.acquire(timeout=LOCK_WAIT)
    except Timeout:
        raise LockedError(f"another vmcoreos run has held {directory / TEMPLATES_FILE} for {LOCK_WAIT:.0f}s; wait for it") from None
    try:
        yield
    finally:
        lock.release()


FIXES = {
    TEMPLATES_FILE: "move it away and reimport the templates (`vmcoreos destroy --templates`)",
    IMAGES_FILE: "move it away; images are then verified again in full on their next use",
}


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path} ({exc}); {FIXES.get(path.name, 'move it away')}") from None
    return data if isinstance(data, dict) else {}


def template_record(vcenter: str, name: str, *, cache_root: Path | None = None) -> TemplateRecord | None:
    """The identity recorded when this host imported template `name` into vCenter `vcenter`."""
    directory = state_dir(cache_root)
    with _locked(directory):
        entry = _read(directory / TEMPLATES_FILE).get(vcenter, {}).get(name)
    try:
        return TemplateRecord(**entry) if isinstance(entry, dict) else None
    except TypeError:
        return None  # a record of another layout vouches for nothing


def remember_template(vcenter: str, name: str, record: TemplateRecord, *, cache_root: Path | None = None) -> None:
    _update(TEMPLATES_FILE, vcenter, name, asdict(record), cache_root)


def image_record(path: Path, *, cache_root: Path | None = None) -> ImageRecord | None:
    """What this host recorded when it last verified the image file at path (its absolute name)."""
    directory = state_dir(cache_root)
    with _locked(directory):
        entry = _read(directory / IMAGES_FILE).get("images", {}).get(str(path))
    try:
        record = ImageRecord(**entry) if isinstance(entry, dict) else None
    except TypeError:
        return None
    if record is None:
        return None
    return replace(record, identity=tuple(record.identity), signers=tuple(record.signers))


def remember_image(path: Path, record: ImageRecord, *, cache_root: Path | None = None) -> None:
    _update(IMAGES_FILE, "images", str(path), asdict(record), cache_root)


def _update(file: str, group: str, key: str, value: dict, cache_root: Path | None) -> None:
    directory = state_dir(cache_root)
    path = directory / file
    with _locked(directory):
        data = _read(path)
        data.setdefault(group, {})[key] = value
        # Written beside the old one and renamed over it: a crash leaves the old file or the new, never half.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=file + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
