"""What this host remembers between runs: the identity of every template it imported.

vCenter inventory is writable by more people than the operator: anyone
allowed to edit a VM's advanced settings can give it our marks. So a
template counts as ours only if this host recorded its instance UUID and
moref when it imported it. The record lives in `<cache root>/state/`,
beside the image cache it was verified from, as one JSON file written
atomically under a lock (runs for different clusters share it).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from vmcoreos.errors import ConfigError, LockedError

TEMPLATES_FILE = "templates.json"
LOCK_WAIT = 30.0  # seconds; a write takes milliseconds, so a longer wait means a stuck run


@dataclass(frozen=True)
class TemplateRecord:
    instance_uuid: str
    moref: str
    sha512: str


def state_dir(cache_root: Path | None = None) -> Path:
    from vmcoreos.images.cache import default_cache_dir

    return (cache_root or default_cache_dir()) / "state"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = FileLock(str(directory / (TEMPLATES_FILE + ".lock")))
    try:
        lock.acquire(timeout=LOCK_WAIT)
    except Timeout:
        raise LockedError(f"another vmcoreos run has held {directory / TEMPLATES_FILE} for {LOCK_WAIT:.0f}s; wait for it") from None
    try:
        yield
    finally:
        lock.release()


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read {path} ({exc}); move it away and reimport the templates (`vmcoreos destroy --templates`)"
        ) from None
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
    directory = state_dir(cache_root)
    path = directory / TEMPLATES_FILE
    with _locked(directory):
        data = _read(path)
        data.setdefault(vcenter, {})[name] = asdict(record)
        # Written beside the old one and renamed over it: a crash leaves the old file or the new, never half.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=TEMPLATES_FILE + ".", suffix=".tmp")
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
