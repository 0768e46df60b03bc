"""This host's lock file for a cluster: two runs from one machine never overlap (cron-safe).

The etcd lease lock (etcd.EtcdLock) guards against other hosts; when each
is taken, and what a failure to take one means, is decided in
vmcoreos/cluster/locking.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

import filelock

from vmcoreos.errors import ConfigError, LockedError
from vmcoreos import environment
from vmcoreos.environment import ENV_LOCK_DIR
from vmcoreos.state import current_user


def lock_dir() -> Path:
    return environment.lock_dir()


def _unusable(directory: Path, exc: OSError) -> ConfigError:
    where = f"{ENV_LOCK_DIR}={directory}" if environment.value(ENV_LOCK_DIR) else f"the lock directory {directory}"
    reason = "it is not a directory" if isinstance(exc, (FileExistsError, NotADirectoryError)) else exc.strerror
    return ConfigError(f"{where} cannot hold lock files: {reason}; point {ENV_LOCK_DIR} at a writable directory")


def _owner_file(path: Path) -> Path:
    return path.with_name(path.name + ".owner")


def _record_owner(path: Path) -> None:
    """Who holds the lock, beside it, for the run that finds it taken (the lock file itself only holds the flock)."""
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "user": current_user(),
             "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = path.with_name(f".{path.name}.owner.{os.getpid()}")
    with contextlib.suppress(OSError):  # the lock holds without it; only the other run's message is poorer
        tmp.write_text(json.dumps(owner))
        os.replace(tmp, _owner_file(path))


def _held_by(path: Path) -> str:
    """The holder as its run recorded it: host, PID, user, since when (and until: its run's end)."""
    try:
        owner = json.loads(_owner_file(path).read_text())
        who = (f"host {str(owner['host'])!r}, PID {int(owner['pid'])}, user {str(owner['user'])!r},"
               f" since {str(owner['since'])!r}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a run that has not recorded itself yet"
    return f"{who}, until that run ends (a host lock goes with its process)"


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
            f"another vmcoreos run holds the lock for cluster {cluster!r}: {_held_by(path)} ({path});"
            " let it finish and try again"
        ) from None
    except OSError as exc:
        raise _unusable(directory, exc) from None
    try:
        _record_owner(path)
        yield path
    finally:
        with contextlib.suppress(OSError):
            _owner_file(path).unlink()
        lock.release()
