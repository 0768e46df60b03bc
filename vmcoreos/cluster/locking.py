"""The lock policy of a run: this host's lock file first, then a lock all hosts see.

The host lock (vmcoreos/hostlock.py) stops two runs from one machine overlapping.
Runs from different hosts are kept apart by etcd's lease lock (etcd.EtcdLock, etcd/leaselock.py)
once an etcd answers, and before that, while the cluster has no etcd to hold
one (its first members are still to be made), by the vSphere lock folder
(vsphere/folderlock.py). Both expire on their own when their holder dies.
Which commands take which, and what happens when one cannot be granted, is
decided here.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Iterator

import requests

from vmcoreos import etcd, hostlock
from vmcoreos.errors import EtcdError, LockedError
from vmcoreos.connection import Connection
from vmcoreos.settings import ClusterSettings
from vmcoreos.vsphere import folderlock, privileges, vms
from vmcoreos.vsphere.session import Session, connect


@contextlib.contextmanager
def session(conn: Connection) -> Iterator[Session]:
    opened = connect(conn)
    try:
        yield opened
    finally:
        opened.close()


@contextlib.contextmanager
def session_for(settings: ClusterSettings, conn: Connection, *, lock: bool = True) -> Iterator[Session]:
    """A vSphere session, under this host's lock for the cluster unless lock=False (status only reads)."""
    with (hostlock.host_lock(settings.name) if lock else contextlib.nullcontext()), session(conn) as opened:
        yield opened


@contextlib.contextmanager
def cluster_lock(run, nodes: dict[str, vms.VmInfo]) -> Iterator[None]:
    """The lock every host sees, for a run that changes the cluster (the host lock is taken before):
    etcd's lease lock when an etcd answers, else the vSphere lock folder.

    The etcd lock fails closed: an etcd that answers but cannot grant the lock
    stops the run. Only an etcd without the v3 lease API at all (v2-only,
    answering 404) leaves the host lock as the only protection.
    """
    members, name = run.members, run.settings.name
    live = members.live_view(nodes)
    if live is None:
        with vsphere_lock(run, nodes):
            yield
        return
    endpoints = [live[0]] + [u for m in live[1].members for u in m.client_urls]
    lock = etcd.EtcdLock(members.client, endpoints, name, f"{socket.gethostname()}:{os.getpid()}")
    try:
        got = lock.acquire()
    except FileNotFoundError:
        got = None
        run.reporter.event("etcd has no v3 lease API; only this host's lock guards the run")
    except (EtcdError, requests.RequestException, ValueError, KeyError) as exc:
        detail = exc.message if isinstance(exc, EtcdError) else type(exc).__name__
        raise EtcdError(
            f"could not take the etcd lock of cluster {name!r} at {live[0]} ({detail}); nothing was"
            " changed. Check etcd with `vmcoreos status` and run again"
        ) from None
    if got is False:
        holder = None
        with contextlib.suppress(Exception):
            holder = lock.holder_of()
        raise LockedError(
            f"another vmcoreos run holds the etcd lock of cluster {name!r}: {_etcd_holder(holder)}, until that run"
            f" ends or {lock.ttl} s after it stops renewing the lock's lease; let it finish and try again"
        )
    members.lock = lock if got else None
    try:
        yield
    finally:
        members.lock = None
        if got:
            lock.release()


def _etcd_holder(holder: str | None) -> str:
    """The holder as its run recorded it (host:PID). It comes from etcd: quoted, so it cannot forge output lines."""
    host, _, pid = (holder or "").rpartition(":")
    if host and pid.isdigit():
        return f"host {host!r}, PID {pid}"
    return f"recorded as {holder!r}" if holder else "a holder that recorded nothing"


@contextlib.contextmanager
def vsphere_lock(run, nodes: dict[str, vms.VmInfo]) -> Iterator[None]:
    """The vSphere lock folder, for a cluster no etcd answers for (a new one: its first members are made now).

    Taken before the first download, upload or clone, and given back however
    the run ends (an error, SIGTERM); `nodes` is what the run planned on, so a
    cluster another run changed meanwhile stops this one instead of being
    built twice.
    """
    placement = run.placement
    # Up front, before the lock folder is made: every privilege the deploy needs, the lock's included.
    privileges.require(run.session, placement, linked_clone=run.settings.node.linked_clone, lock=True)
    lock = folderlock.FolderLock(run.session, placement.folder, run.name,
                                 where=placement.folder_path or "the datacenter's VM folder")
    broken = lock.acquire()
    if broken is not None:
        run.reporter.event(f"broke cluster {run.name!r}'s expired vSphere lock, held by {broken.describe()}")
    try:
        now = set(run.inventory().nodes)
        if now != set(nodes):
            raise LockedError(
                f"cluster {run.name!r} changed while this run waited for its lock (nodes now: "
                f"{', '.join(sorted(now)) or 'none'}); another run got there first: run again to plan from what"
                " is there now"
            )
        yield
    finally:
        left = lock.release()
        if left:
            run.reporter.event(left)
