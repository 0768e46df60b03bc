"""Talking to the cluster's etcd: members, health, member add/remove.

Membership is read through the v3 JSON gateway (`/v3/`, then `/v3beta/`,
then `/v3alpha/` for older etcd) and falls back to v2 `/v2/members`. A node
counts as joined when it is listed by name with client URLs and its own
`/health` says true.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import requests
import tenacity

from vmcoreos.errors import EtcdError

TIMEOUT = (3, 5)
V3_PREFIXES = ("/v3", "/v3beta", "/v3alpha")


@dataclass(frozen=True)
class Member:
    id: str  # hex, as etcdctl prints it
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False


@dataclass
class ClusterView:
    members: list[Member]
    leader: str | None = None  # hex id
    source: str = ""
    extra: dict = field(default_factory=dict)

    def by_name(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)


class EtcdBusy(EtcdError):
    """etcd refused a membership change for now (its strict reconfig check); worth retrying."""


# With strict reconfig checks (the default) etcd refuses a membership change until every
# member has been connected for 5 s, and one that would leave too few started members.
_TRANSIENT = ("unhealthy cluster", "not enough started members", "too many requests", "leader changed")
RECONFIG_PATIENCE = 60.0


def _post(url: str, body: dict) -> dict:
    resp = requests.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    if resp.status_code == 404:
        raise FileNotFoundError(url)
    if resp.status_code >= 400:
        text = _err_text(resp)
        kind = EtcdBusy if any(t in text for t in _TRANSIENT) else EtcdError
        raise kind(f"etcd at {url} answered HTTP {resp.status_code}: {text}")
    return resp.json()


def _patiently(fn, *args):
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(EtcdBusy),
        wait=tenacity.wait_exponential(multiplier=0.25, max=3),
        stop=tenacity.stop_after_delay(RECONFIG_PATIENCE),
        reraise=True,
    )
    return retrying(fn, *args)


def _err_text(resp) -> str:
    try:
        data = resp.json()
        return data.get("error") or data.get("message") or resp.text.strip()
    except ValueError:
        return resp.text.strip()[:200]


def _v3_member(raw: dict) -> Member:
    return Member(
        id=format(int(raw.get("ID", "0")), "x"),
        name=raw.get("name", ""),
        peer_urls=tuple(raw.get("peerURLs") or ()),
        client_urls=tuple(raw.get("clientURLs") or ()),
        is_learner=bool(raw.get("isLearner", False)),
    )


def member_list(endpoint: str) -> ClusterView:
    endpoint = endpoint.rstrip("/")
    for prefix in V3_PREFIXES:
        try:
            data = _post(f"{endpoint}{prefix}/cluster/member/list", {})
        except FileNotFoundError:
            continue
        members = [_v3_member(m) for m in data.get("members") or []]
        leader = _leader(endpoint, prefix)
        return ClusterView(members, leader, f"{prefix}/cluster/member/list")
    resp = requests.get(f"{endpoint}/v2/members", timeout=TIMEOUT)
    if resp.status_code != 200:
        raise EtcdError(f"etcd at {endpoint} serves no membership API (HTTP {resp.status_code})")
    members = [
        Member(m["id"], m.get("name", ""), tuple(m.get("peerURLs") or ()), tuple(m.get("clientURLs") or ()))
        for m in resp.json().get("members") or []
    ]
    return ClusterView(members, None, "/v2/members")


def _leader(endpoint: str, prefix: str) -> str | None:
    try:
        status = _post(f"{endpoint}{prefix}/maintenance/status", {})
    except (FileNotFoundError, EtcdError, requests.RequestException, ValueError):
        return None
    leader = status.get("leader")
    return format(int(leader), "x") if leader else None


def healthy(endpoint: str) -> bool:
    try:
        resp = requests.get(endpoint.rstrip("/") + "/health", timeout=TIMEOUT)
        return resp.status_code == 200 and str(resp.json().get("health")) == "true"
    except (requests.RequestException, ValueError):
        return False


def member_add(endpoint: str, peer_url: str) -> Member:
    return _patiently(_member_add, endpoint, peer_url)


def _member_add(endpoint: str, peer_url: str) -> Member:
    endpoint = endpoint.rstrip("/")
    for prefix in V3_PREFIXES:
        try:
            data = _post(f"{endpoint}{prefix}/cluster/member/add", {"peerURLs": [peer_url], "isLearner": False})
        except FileNotFoundError:
            continue
        return _v3_member(data.get("member") or {})
    resp = requests.post(f"{endpoint}/v2/members", json={"peerURLs": [peer_url]}, timeout=TIMEOUT)
    if resp.status_code != 201:
        raise EtcdError(f"etcd refused to add member {peer_url}: {_err_text(resp)}")
    data = resp.json()
    return Member(data["id"], "", tuple(data.get("peerURLs") or ()), ())


def member_remove(endpoint: str, member_id_hex: str) -> None:
    _patiently(_member_remove, endpoint, member_id_hex)


def _member_remove(endpoint: str, member_id_hex: str) -> None:
    endpoint = endpoint.rstrip("/")
    for prefix in V3_PREFIXES:
        try:
            _post(f"{endpoint}{prefix}/cluster/member/remove", {"ID": str(int(member_id_hex, 16))})
        except FileNotFoundError:
            continue
        return
    resp = requests.delete(f"{endpoint}/v2/members/{member_id_hex}", timeout=TIMEOUT)
    if resp.status_code not in (204, 410):
        raise EtcdError(f"etcd refused to remove member {member_id_hex}: {_err_text(resp)}")


# -- a lease lock on the cluster itself, for runs from more than one host ------

LOCK_PREFIX = "/vmcoreos/lock/"


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


class EtcdLock:
    """A key held under a lease: gone when released, or TTL seconds after its holder dies."""

    def __init__(self, endpoint: str, cluster: str, holder: str, ttl: int = 60):
        self.endpoint = endpoint.rstrip("/")
        self.key = LOCK_PREFIX + cluster
        self.holder = holder
        self.ttl = ttl
        self.lease: str | None = None
        self._stop = None
        self._thread = None

    def acquire(self) -> bool:
        import threading

        grant = _post(f"{self.endpoint}/v3/lease/grant", {"TTL": self.ttl})
        self.lease = grant["ID"]
        key = _b64(self.key)
        txn = {
            "compare": [{"key": key, "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": key, "value": _b64(self.holder), "lease": self.lease}}],
        }
        if not _post(f"{self.endpoint}/v3/kv/txn", txn).get("succeeded"):
            if not self._break_stale():
                self._revoke()
                return False
            if not _post(f"{self.endpoint}/v3/kv/txn", txn).get("succeeded"):
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
        import os
        import socket

        data = _post(f"{self.endpoint}/v3/kv/range", {"key": _b64(self.key)})
        kvs = data.get("kvs") or []
        if not kvs:
            return True
        import base64

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
            _post(f"{self.endpoint}/v3/lease/revoke", {"ID": lease})
        return True

    def holder_of(self) -> str | None:
        import base64

        data = _post(f"{self.endpoint}/v3/kv/range", {"key": _b64(self.key)})
        kvs = data.get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs and kvs[0].get("value") else None

    def _keepalive(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                requests.post(
                    f"{self.endpoint}/v3/lease/keepalive", data=json.dumps({"ID": self.lease}), timeout=TIMEOUT
                ).close()
            except requests.RequestException:
                pass  # the lease outlives a few missed beats; a dead cluster fails the run anyway

    def _revoke(self) -> None:
        if self.lease is None:
            return
        try:
            _post(f"{self.endpoint}/v3/lease/revoke", {"ID": self.lease})
        except Exception:
            pass  # it expires by itself
        self.lease = None

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
        self._revoke()


def move_leader(leader_endpoint: str, target_id_hex: str) -> None:
    """Hand leadership to another member before the leader is removed (one election, on our terms)."""
    endpoint = leader_endpoint.rstrip("/")
    for prefix in V3_PREFIXES:
        try:
            _post(f"{endpoint}{prefix}/maintenance/transfer-leadership", {"targetID": str(int(target_id_hex, 16))})
        except FileNotFoundError:
            continue
        return
