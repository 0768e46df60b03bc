"""A lease lock on the cluster's own etcd, for runs from more than one host.

The policy (when a run takes it, what a failure means) is the caller's; this
module owns the key, the lease and its keepalive.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time

import requests

from vmcoreos.errors import EtcdError, LockedError
from vmcoreos.etcd.client import Client

LOCK_PREFIX = "/vmcoreos/lock/"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdLock:
    """A key held under a lease: gone when released, or TTL seconds after its holder dies.

    Requests go to the first of `endpoints` that answers, so the keepalive
    follows the members that survive a rebuild; `follow` adds the client URLs
    of members that joined since. When no keepalive has got through for two
    thirds of the TTL the lease may lapse any moment, so `check` (called before
    every membership change) stops the run.
    """

    def __init__(self, client: Client, endpoints: list[str] | str, cluster: str, holder: str, ttl: int = 60):
        self.client = client  # the run's: its session and TLS trust
        self.endpoints = [e.rstrip("/") for e in ([endpoints] if isinstance(endpoints, str) else endpoints)]
        self.key = LOCK_PREFIX + cluster
        self.holder = holder
        self.ttl = ttl
        self.lease: str | None = None
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._renewed = time.monotonic()
        self._lost: str | None = None
        self._mutex = threading.Lock()

    @property
    def endpoint(self) -> str:
        return self.endpoints[0]

    def follow(self, endpoints: list[str]) -> None:
        with self._mutex:
            for e in endpoints:
                if e.rstrip("/") not in self.endpoints:
                    self.endpoints.append(e.rstrip("/"))

    def _post_any(self, path: str, body: dict) -> dict:
        """POST a v3 call (path after the gateway prefix, which each endpoint's etcd version decides: /v3,
        /v3beta on 3.3, /v3alpha on 3.2) to the endpoint that answered last, else to the others in turn
        (moving the winner first). FileNotFoundError only when no endpoint has the v3 API at all."""
        with self._mutex:
            order = list(self.endpoints)
        last: Exception | None = None
        without_v3 = 0
        for endpoint in order:
            try:
                answer = self.client.v3(endpoint, path, body)
            except (requests.RequestException, ValueError) as exc:
                last = exc
                continue
            if answer is None:  # v2 only, or a 404 from whatever answers there: another member may have it
                without_v3 += 1
                continue
            with self._mutex:
                if self.endpoints[0] != endpoint and endpoint in self.endpoints:
                    self.endpoints.remove(endpoint)
                    self.endpoints.insert(0, endpoint)
            return answer[1]
        if without_v3 == len(order):
            raise FileNotFoundError(path)
        why = type(last).__name__ if last is not None else "no v3 API"
        raise EtcdError(f"no etcd member answers at {', '.join(order)} ({why})")

    def acquire(self) -> bool:
        grant = self._post_any("/lease/grant", {"TTL": self.ttl})
        self.lease = grant["ID"]
        self._renewed = time.monotonic()
        key = _b64(self.key)
        txn = {
            "compare": [{"key": key, "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": key, "value": _b64(self.holder), "lease": self.lease}}],
        }
        if not self._post_any("/kv/txn", txn).get("succeeded"):
            if not self._break_stale():
                self._revoke()
                return False
            if not self._post_any("/kv/txn", txn).get("succeeded"):
                self._revoke()
                return False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keepalive, name="etcd-lock", daemon=True)
        self._thread.start()
        return True

    def _break_stale(self) -> bool:
        """A lock held by a dead process on this very host is stale: revoke its lease now.

        Otherwise a run killed with SIGKILL would block the next cron run until
        its lease expired; other hosts' locks are left to expire on their own.
        """
        data = self._post_any("/kv/range", {"key": _b64(self.key)})
        kvs = data.get("kvs") or []
        if not kvs:
            return True
        holder = base64.b64decode(kvs[0].get("value", "")).decode(errors="replace")
        host, _, pid = holder.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
            return False  # alive: a real holder
        except ProcessLookupError:
            pass
        except PermissionError:
            return False
        lease = kvs[0].get("lease")
        if lease:
            self._post_any("/lease/revoke", {"ID": lease})
        return True

    def holder_of(self) -> str | None:
        data = self._post_any("/kv/range", {"key": _b64(self.key)})
        kvs = data.get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode(errors="replace") if kvs and kvs[0].get("value") else None

    def _keepalive(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                reply = self._post_any("/lease/keepalive", {"ID": self.lease})
            except (EtcdError, FileNotFoundError):
                continue  # check() stops the run once the misses add up
            # The gateway streams one result per request; a lease that expired comes back without a TTL.
            if str((reply.get("result") or {}).get("TTL", "0")) in ("0", ""):
                self._lost = "its lease expired"
            else:
                self._renewed = time.monotonic()

    def check(self) -> None:
        """Raise LockedError when the lock can no longer be trusted to be ours."""
        if self._lost is None and time.monotonic() - self._renewed > self.ttl * 2 / 3:
            self._lost = f"no etcd member renewed its lease for {time.monotonic() - self._renewed:.0f}s"
        if self._lost:
            raise LockedError(
                f"the cluster's etcd lock is no longer held ({self._lost}), so the run stopped before its next"
                " membership change; check the cluster with `vmcoreos status` and run again"
            )

    def _revoke(self) -> None:
        if self.lease is None:
            return
        try:
            self._post_any("/lease/revoke", {"ID": self.lease})
        except Exception:
            pass  # it expires by itself
        self.lease = None

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
        self._revoke()
