"""This host's lock file for a cluster: two runs from one machine never overlap (cron-safe).

The etcd lease lock (etcd.EtcdLock) guards against other hosts; when each
is taken, and what a failure to take one means, is decided in
vmcoreos/cluster/locking.py.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import filelock

from vmcoreos.errors import ConfigError, LockedError
from vmcoreos import environment
from vmcoreos.environment import ENV_LOCK_DIR


def lock_dir() -> Path:
    return environment.lock_dir()


def _unusable(directory: Path, exc: OSError) -> ConfigError:
    where = f"{ENV_LOCK_DIR}={directory}" if environment.value(ENV_LOCK_DIR) else f"the lock directory {directory}"
    reason = "it is not a directory" if isinstance(exc, (FileExistsError, NotADirectoryError)) else exc.strerror
    return ConfigError(f"{where} cannot hold lock files: {reason}; point {ENV_LOCK_DIR} at a writable directory")


@contextlib.contextmanager
def host_lock(cluster: str) -> Iterator[Path]:
    directory = lock_dir()
    path = directory / f"{cluster}.lock"
    lock = filelock.FileLock(str(path), timeout=0)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except filelock.Timeout:  # before OSError: filelock's Timeout is a TimeoutError, an OSError
        raise LockedError(
            f"another vmcoreos run holds the lock for cluster {cluster!r} ({path}); let it finish and try again"
        ) from None
    except OSError as exc:
        raise _unusable(directory, exc) from None
    try:
        yield path
    finally:
        lock.release()
