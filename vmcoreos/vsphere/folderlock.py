"""The vSphere lock of a cluster that has no etcd yet: a folder that only one run can create.

Until a node runs etcd, this host's lock file (vmcoreos.hostlock) is the only
guard, and it guards only against runs on the same host. CreateFolder is
atomic in vCenter: when two runs create the same name in one folder, the
loser gets DuplicateName. So the lock is a folder with one fixed name per
cluster (naming.lock_folder_name), created in the cluster's VM folder.

The holder and the expiry are stored on that folder as the value of a custom
attribute (CustomFieldsManager field FIELD, defined for Folders). Folders
have no extraConfig or annotation. Putting the owner in the folder's name
would give each run its own name, so both racing runs would "win". A child
folder named after the owner would need a rename at every renewal and would
have to fit in 79 characters. A custom value costs one SetField per
renewal, and any user who can see the folder can read it (the vSphere client
shows it in the folder's Custom Attributes).

All times are vCenter's (ServiceInstance.CurrentTime), so hosts whose clocks
disagree still agree on when a lock expires.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

from pyVmomi import vim, vmodl

from vmcoreos import naming
from vmcoreos.errors import ConfigError, LockedError, VmcoreosError, VSphereError
from vmcoreos.vsphere.session import Session
from vmcoreos.vsphere.waits import wait_task
from vmcoreos.vsphere.faults import PermissionDenied

FIELD = "vmcoreos.lock"
TTL = 300.0  # seconds a lock outlives its last renewal; the holder renews every TTL/3
SETTLE = 5.0  # seconds a loser waits for the winner to write its owner (CreateFolder and SetField are two calls)
_SHOWN = 80  # characters of a string read back from vSphere that a message shows


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quoted(text: str) -> str:
    # Read back from vSphere, where anyone with Global.SetCustomField may have written it:
    # repr() escapes newlines and terminal escapes, so it cannot forge an output line.
    return repr(text[:_SHOWN] + ("…" if len(text) > _SHOWN else ""))


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (a container) and no $USER
        return f"uid {os.getuid()}"


@dataclass(frozen=True)
class Holder:
    """Who holds a cluster's vSphere lock, and until when (vCenter's clock, epoch seconds)."""

    host: str
    pid: int
    user: str  # the OS user who ran vmcoreos
    vcenter_user: str
    since: float
    until: float

    @classmethod
    def this_run(cls, vcenter_user: str, now: float, ttl: float) -> "Holder":
        return cls(socket.gethostname(), os.getpid(), _os_user(), vcenter_user, now, now + ttl)

    def value(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, text: str | None) -> "Holder | None":
        """The holder a custom value records; None for a value vmcoreos did not write (or none)."""
        try:
            data = json.loads(text or "")
            holder = cls(**{k: data[k] for k in ("host", "pid", "user", "vcenter_user", "since", "until")})
        except (ValueError, TypeError, KeyError):
            return None
        strings = all(isinstance(v, str) for v in (holder.host, holder.user, holder.vcenter_user))
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (holder.since, holder.until))
        # A pid of 0 or below would make dead_here()'s kill(pid, 0) ask about a whole process group.
        pid = isinstance(holder.pid, int) and not isinstance(holder.pid, bool) and holder.pid > 0
        return holder if strings and numbers and pid else None

    def describe(self) -> str:
        return (f"{_quoted(self.user)} on {_quoted(self.host)} (pid {int(self.pid)}, vCenter user"
                f" {_quoted(self.vcenter_user)}) since {_utc(self.since)} until {_utc(self.until)}")

    def same_run(self, other: "Holder | None") -> bool:
        return other is not None and (self.host, self.pid, self.since) == (other.host, other.pid, other.since)

    def dead_here(self) -> bool:
        """Held by a process of this host that no longer exists: a run killed before it could release."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(int(self.pid), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OverflowError, ValueError):
            return False  # PermissionError: alive, another user's
        return False


@dataclass(frozen=True)
class _Found:
    ref: object
    raw: str | None  # the custom value as read, None when there is none
    children: int

    @property
    def holder(self) -> Holder | None:
        return Holder.parse(self.raw)


class FolderLock:
    """The lock folder of one cluster in `parent` (its VM folder): acquire, renew in a thread, release.

    `where` names the parent folder in messages.
    """

    def __init__(self, session: Session, parent, cluster: str, *, where: str, ttl: float = TTL,
                 settle: float = SETTLE):
        self.session, self.parent, self.cluster, self.where = session, parent, cluster, where
        self.name = naming.lock_folder_name(cluster)
        self.ttl, self.settle = ttl, settle
        self.folder = None
        self.holder: Holder | None = None
        self._key: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking it -------------------------------------------------------------------
    def acquire(self) -> Holder | None:
        """Take the lock, or raise LockedError naming who holds it.

        Returns the holder of an expired lock (or of one left by a dead process of this host) that
        had to be broken first, for the caller's notice; None when the lock was free.
        """
        self._key = self._field_key()
        broken = None
        for _ in range(3):
            now = self._now()
            try:
                folder = self.parent.CreateFolder(self.name)
            except vim.fault.DuplicateName:
                found = self._find()
                if found is None:
                    continue  # released between our create and our look: try again
                if found.raw is None:
                    found = self._settled(found)
                holder = found.holder
                if holder is None or not (holder.until <= now or holder.dead_here()):
                    raise LockedError(self._held(found, holder)) from None
                if found.children:
                    raise LockedError(
                        f"cluster {self.cluster!r}'s vSphere lock expired ({holder.describe()}), but its folder"
                        f" {self.name!r} in {self.where} is not empty, so vmcoreos will not remove it; move out"
                        " what is in it and remove the folder, then run again"
                    ) from None
                # By moref, never by name: when another run broke it first and took a new lock, that
                # lock is a new folder with a new moref, and this Destroy finds nothing.
                with contextlib.suppress(VSphereError):  # gone already, or it fails: the next try tells
                    self._destroy(found.ref)
                broken = holder
                continue
            except (vim.fault.NoPermission, PermissionDenied) as exc:
                raise ConfigError(self._denied(exc, "Folder.Create", f"folder {self.where}")) from None
            self._own(folder, now)
            return broken
        raise LockedError(
            f"cluster {self.cluster!r}'s vSphere lock (folder {self.name!r} in {self.where}) kept changing hands"
            " while this run tried to take it; let the other runs finish and try again"
        )

    def _own(self, folder, now: float) -> None:
        self.folder = folder
        self.holder = Holder.this_run(self.session.conn.username, now, self.ttl)
        try:
            self._write(self.holder)
        except BaseException:
            # A lock folder without an owner never expires: it would block every run until removed by hand.
            with contextlib.suppress(Exception):
                self._destroy(folder)
            self.folder = None
            raise
        self._thread = threading.Thread(target=self._renew, name="vsphere-lock", daemon=True)
        self._thread.start()

    def _settled(self, found: _Found) -> _Found:
        """The lock as it reads once its creator has had time to write its owner."""
        deadline = time.monotonic() + self.settle
        while found.raw is None and time.monotonic() < deadline:
            time.sleep(0.2)
            found = self._find() or found
        return found

    def _held(self, found: _Found, holder: Holder | None) -> str:
        where = f"vSphere folder {self.name!r} in {self.where}"
        if holder is None:
            what = f"{_quoted(found.raw)} as its owner" if found.raw else "no owner"
            return (f"cluster {self.cluster!r} is locked by a run that recorded {what} ({where}), so the lock has"
                    f" no expiry; if no vmcoreos run is under way, remove the folder {self.name!r} and try again")
        return (
            f"cluster {self.cluster!r} is locked by another vmcoreos run: {holder.describe()} ({where}); let it"
            f" finish and try again, or, if that run is dead, wait for the lock to expire or remove the folder"
            f" {self.name!r}"
        )

    # -- holding it ------------------------------------------------------------------
    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                current = self._read(self.folder)
                if current is None or not self.holder.same_run(current.holder):
                    return  # broken by another run after renewals failed for a whole TTL: not ours to renew
                self.holder = replace(self.holder, until=self._now() + self.ttl)
                self._write(self.holder)
            except Exception:
                continue  # one missed renewal; two more may fail before the lock expires

    # -- giving it back --------------------------------------------------------------
    def release(self) -> str | None:
        """Remove the lock folder if it is still ours; otherwise, or when that fails, why it stays."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        folder, self.folder = self.folder, None
        if folder is None:
            return None
        try:
            current = self._read(folder)
            if current is None or not self.holder.same_run(current.holder):
                return None  # broken by another run after ours expired: not ours to remove
            if current.children:
                return (f"the lock folder {self.name!r} in {self.where} is not empty, so it was left in place;"
                        " move out what is in it and remove it")
            self._destroy(folder)
        except (VmcoreosError, vmodl.MethodFault) as exc:
            detail = exc.message if isinstance(exc, VmcoreosError) else exc.msg
            return (f"could not remove the lock folder {self.name!r} in {self.where} ({detail}); it expires at"
                    f" {_utc(self.holder.until)}, or remove it")
        return None

    # -- vSphere calls ---------------------------------------------------------------
    def _now(self) -> float:
        return self.session.si.CurrentTime().timestamp()

    def _field_key(self) -> int:
        manager = self.session.content.customFieldsManager

        def defined() -> int | None:
            for field in manager.field or []:
                if field.name == FIELD and field.managedObjectType in (None, "", "Folder", vim.Folder):
                    return field.key
            return None

        key = defined()
        if key is not None:
            return key
        try:
            return manager.AddCustomFieldDef(name=FIELD, moType=vim.Folder).key
        except vim.fault.DuplicateName:
            key = defined()  # another run defined it meanwhile
            if key is None:
                raise VSphereError(
                    f"vCenter has a custom attribute {FIELD!r} that is not for folders; vmcoreos keeps its lock's"
                    " owner in one for folders: rename or remove that attribute"
                ) from None
            return key
        except (vim.fault.NoPermission, PermissionDenied) as exc:
            raise ConfigError(self._denied(
                exc, "Global.ManageCustomFields", "vCenter's root folder",
                also=f", or have an administrator define the custom attribute {FIELD!r} for folders once",
            )) from None

    def _denied(self, exc, privilege: str, on: str, also: str = "") -> str:
        user = self.session.conn.username
        missing = getattr(exc, "privilegeId", None) or privilege
        return (f"{user!r} lacks the privilege {missing} on {on}, which the vSphere lock of a cluster without"
                f" etcd needs; grant it in a role on that object{also} (see docs/real-vcenter.md,"
                " \"Privileges\")")

    def _write(self, holder: Holder) -> None:
        try:
            self.session.content.customFieldsManager.SetField(entity=self.folder, key=self._key, value=holder.value())
        except (vim.fault.NoPermission, PermissionDenied) as exc:
            raise ConfigError(self._denied(exc, "Global.SetCustomField", f"folder {self.where}")) from None

    def _find(self) -> _Found | None:
        props = self.session.retrieve_all(self.parent, vim.Folder, ["name"], recursive=False)
        refs = [ref for ref, p in props.items() if p.get("name") == self.name]
        return self._read(refs[0]) if refs else None

    def _read(self, ref) -> _Found | None:
        try:
            props = self.session.retrieve([ref], ["customValue", "childEntity"], vim.Folder).get(ref)
        except vmodl.fault.ManagedObjectNotFound:
            return None
        if props is None:
            return None
        # The last value for our key: vcsim 0.24's SetField appends where vCenter (and later vcsim) replaces.
        raw = next((v.value for v in reversed(props.get("customValue") or []) if v.key == self._key), None)
        return _Found(ref, raw, len(props.get("childEntity") or []))

    def _destroy(self, ref) -> None:
        try:
            wait_task(self.session, ref.Destroy_Task(), what=f"removing the lock folder {self.name}")
        except vmodl.fault.ManagedObjectNotFound:
            pass  # already gone
        except (vim.fault.NoPermission, PermissionDenied) as exc:
            raise ConfigError(self._denied(exc, "Folder.Delete", f"the lock folder {self.name!r}")) from None
