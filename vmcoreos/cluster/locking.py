"""The lock policy of a run: this host's lock file first, then etcd's lease lock once an etcd answers.

The host lock (vmcoreos.locks) stops two runs from one machine overlapping;
the etcd lock (etcd.EtcdLock) stops runs from different hosts doing so, and
its lease makes a crashed run's lock expire on its own. Which commands take
which, and what happens when etcd cannot grant one, is decided here.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Iterator

import requests

from vmcoreos import etcd, locks
from vmcoreos.errors import EtcdError, LockedError
from vmcoreos.settings import ClusterSettings, Connection
from vmcoreos.vsphere import vms
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
    with (locks.host_lock(settings.name) if lock else contextlib.nullcontext()), session(conn) as opened:
        yield opened


@contextlib.contextmanager
def etcd_lock(run, nodes: dict[str, vms.VmInfo]) -> Iterator[None]:
    """The etcd lease lock, once there is an etcd to hold it (the host lock is taken before).

    It fails closed: an etcd that answers but cannot grant the lock stops the
    run. Only an etcd without the v3 lease API at all (v2-only, answering 404)
    leaves the host lock as the only protection.
    """
    members, name = run.members, run.settings.name
    live = members.live_view(nodes)
    if live is None:
        yield
        return
    endpoints = [live[0]] + [u for m in live[1].members for u in m.client_urls]
    lock = etcd.EtcdLock(endpoints, name, f"{socket.gethostname()}:{os.getpid()}")
    try:
        got = lock.acquire()
    except FileNotFoundError:
        got = None
        run.reporter.event("etcd has no v3 lease API; only this host's lock guards the run")
    except (EtcdError, requests.RequestException, ValueError, KeyError) as exc:
        detail = exc.message if isinstance(exc, EtcdError) else type(exc).__name__
        raise EtcdError(
            f"could not take cluster {name!r}'s etcd lock at {live[0]} ({detail}); nothing was"
            " changed. Check etcd with `vmcoreos status` and run again"
        ) from None
    if got is False:
        holder = None
        with contextlib.suppress(Exception):
            holder = lock.holder_of()
        # The holder comes from etcd: quoted, so it cannot forge output lines.
        raise LockedError(
            f"another vmcoreos run ({repr(holder) if holder else 'unknown'}) holds cluster {name!r}'s etcd lock;"
            " it expires a minute after that run dies"
        )
    members.lock = lock if got else None
    try:
        yield
    finally:
        members.lock = None
        if got:
            lock.release()
