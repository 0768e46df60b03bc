"""Typed errors. Each carries the exit code the CLI maps it to.

The core raises these and never prints; the CLI turns one into a single line
on stderr and the matching exit code. Messages name the problem and the fix.
"""

from __future__ import annotations


class ExitCode:
    OK = 0
    FAILED = 1
    USAGE = 2
    VERIFY = 3
    NOT_JOINED = 4
    LOCKED = 5
    # status only: vCenter or etcd could not be asked, so health is unknown (monitoring's UNKNOWN, not CRITICAL).
    UNKNOWN = 6
    # status only: every member healthy, but two share a host or datastore although a usable one is free.
    DEGRADED = 7
    INTERRUPTED = 130


class VmcoreosError(Exception):
    """Base of every error the CLI reports as one line."""

    exit_code = ExitCode.FAILED

    def __init__(self, message: str, *, findings: list[str] | None = None):
        super().__init__(message)
        self.message = message
        # Further lines (validation findings) the CLI prints after the message.
        self.findings = findings or []


class ConfigError(VmcoreosError):
    """The cluster file, a node config or a flag is wrong."""

    exit_code = ExitCode.USAGE


class UnsafeArchiveError(ConfigError):
    """An OVA that must not be read: bad member names, links, missing parts."""


class VerificationError(VmcoreosError):
    """An image's signature or digest did not check out."""

    exit_code = ExitCode.VERIFY


class DownloadError(VmcoreosError):
    """An image could not be fetched."""


class VSphereError(VmcoreosError):
    """vSphere said no, or could not be reached."""


class OwnershipError(VSphereError):
    """A VM we were about to change does not carry this cluster's mark."""


class NotJoinedError(VmcoreosError):
    """Nodes did not become healthy etcd members in time."""

    exit_code = ExitCode.NOT_JOINED


class LockedError(VmcoreosError):
    """Another run holds the cluster's lock."""

    exit_code = ExitCode.LOCKED


class EtcdError(VmcoreosError):
    """The etcd cluster refused or could not answer a membership call."""


class StatusUnknownError(VmcoreosError):
    """status could not ask vCenter or etcd: the cluster's health is unknown, not bad."""

    exit_code = ExitCode.UNKNOWN


class Interrupted(VmcoreosError):
    exit_code = ExitCode.INTERRUPTED
