"""Talking to the cluster's etcd: members, health, member add/remove.

Membership is read through the v3 JSON gateway (`/v3/`, then `/v3beta/`,
then `/v3alpha/` for older etcd) and falls back to v2 `/v2/members`. A node
counts as joined when it is listed by name with client URLs and its own
`/health` says true.

Whatever etcd answers is untrusted input: it may be another tenant's etcd
behind a stale DHCP address, or a member that named itself to inject unit
lines. So every reply is read with a size limit, member names and URLs are
checked (check_view) before they are used, and the cluster ID of the answer
is kept so membership changes can be refused against the wrong cluster.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
import tenacity

from vmcoreos.errors import EtcdError, LockedError

TIMEOUT = (3, 5)
V3_PREFIXES = ("/v3", "/v3beta", "/v3alpha")
# A member list of a few hundred members is well under this; anything larger is not an etcd we want.
MAX_REPLY_BYTES = 1 << 20
# Node numbers above this are refused from etcd: a member named lab-99999999 must not set the node count.
MAX_NODE_INDEX = 999

# requests' verify= for every call: True (system CAs), or the cluster file's etcd.ca_file.
_verify: bool | str = True


def use_ca(ca_file: str | None) -> None:
    """Trust etcd.ca_file for https client URLs (every request this module makes)."""
    global _verify
    _verify = str(ca_file) if ca_file else True


def _request(method: str, url: str, **kwargs) -> tuple[requests.Response, bytes]:
    """One request whose reply body is read up to MAX_REPLY_BYTES, never more."""
    with requests.request(method, url, timeout=TIMEOUT, verify=_verify, stream=True, **kwargs) as resp:
        body = bytearray()
        for chunk in resp.iter_content(64 << 10):
            body += chunk
            if len(body) > MAX_REPLY_BYTES:
                raise EtcdError(
                    f"etcd at {url} sent a reply over {MAX_REPLY_BYTES >> 20} MiB; it is not a vmcoreos etcd"
                    " member, check which machine answers there"
                )
        return resp, bytes(body)


def _json(body: bytes) -> dict:
    data = json.loads(body or b"{}")
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


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
    cluster_id: str | None = None  # hex: v3 header.cluster_id, or v2's X-Etcd-Cluster-Id

    def by_name(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)


class EtcdBusy(EtcdError):
    """etcd refused a membership change for now (its strict reconfig check); worth retrying."""


# With strict reconfig checks (the default) etcd refuses a membership change until every
# member has been connected for 5 s, and one that would leave too few started members.
_TRANSIENT = ("unhealthy cluster", "not enough started members", "too many requests", "leader changed")
RECONFIG_PATIENCE = 60.0


def _post(url: str, body: dict) -> dict:
    resp, raw = _request("POST", url, data=json.dumps(body), headers={"Content-Type": "application/json"})
    if resp.status_code == 404:
        raise FileNotFoundError(url)
    if resp.status_code >= 400:
        text = _err_text(raw)
        kind = EtcdBusy if any(t in text for t in _TRANSIENT) else EtcdError
        raise kind(f"etcd at {url} answered HTTP {resp.status_code}: {text}")
    return _json(raw)


def _patiently(fn, *args):
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(EtcdBusy),
        wait=tenacity.wait_exponential(multiplier=0.25, max=3),
        stop=tenacity.stop_after_delay(RECONFIG_PATIENCE),
        reraise=True,
    )
    return retrying(fn, *args)


def _err_text(raw: bytes) -> str:
    """etcd's error message, quoted: it is shown to the user and may carry anything."""
    try:
        data = _json(raw)
        text = str(data.get("error") or data.get("message") or raw.decode(errors="replace").strip())
    except ValueError:
        text = raw.decode(errors="replace").strip()
    return repr(text[:200])


def _v3_member(raw: dict) -> Member:
    return Member(
        id=format(int(raw.get("ID", "0")), "x"),
        name=str(raw.get("name", "")),
        peer_urls=tuple(str(u) for u in raw.get("peerURLs") or ()),
        client_urls=tuple(str(u) for u in raw.get("clientURLs") or ()),
        is_learner=bool(raw.get("isLearner", False)),
    )


def _hex_id(value) -> str | None:
    """A cluster ID as hex, from v3's decimal string or v2's hex header."""
    if value in (None, "", "0"):
        return None
    text = str(value)
    try:
        return format(int(text), "x") if text.isdigit() else format(int(text, 16), "x")
    except ValueError:
        return None


def member_list(endpoint: str) -> ClusterView:
    endpoint = endpoint.rstrip("/")
    for prefix in V3_PREFIXES:
        try:
            data = _post(f"{endpoint}{prefix}/cluster/member/list", {})
        except FileNotFoundError:
            continue
        members = [_v3_member(m) for m in data.get("members") or []]
        leader = _leader(endpoint, prefix)
        cluster_id = _hex_id((data.get("header") or {}).get("cluster_id"))
        return ClusterView(members, leader, f"{prefix}/cluster/member/list", cluster_id=cluster_id)
    resp, raw = _request("GET", f"{endpoint}/v2/members")
    if resp.status_code != 200:
        raise EtcdError(f"etcd at {endpoint} serves no membership API (HTTP {resp.status_code})")
    members = [
        Member(str(m["id"]), str(m.get("name", "")), tuple(str(u) for u in m.get("peerURLs") or ()),
               tuple(str(u) for u in m.get("clientURLs") or ()))
        for m in _json(raw).get("members") or []
    ]
    return ClusterView(members, None, "/v2/members", cluster_id=_hex_id(resp.headers.get("X-Etcd-Cluster-Id")))


# -- what we accept from etcd ------------------------------------------------------

_URL = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[0-9.]+):(\d{1,5})")


def url_host(url: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP literal of an http(s)://<IP>:<port> URL; None for anything else (names, paths, userinfo)."""
    match = _URL.fullmatch(url)
    if not match or not 0 < int(match.group(2)) < 65536:
        return None
    try:
        return ipaddress.ip_address(match.group(1).strip("[]"))
    except ValueError:
        return None


def same_host(url: str, ip: str | None) -> bool:
    """True when url's host is exactly the address ip (parsed, so 10.0.0.2 never matches 10.0.0.21)."""
    host = url_host(url)
    try:
        return host is not None and ip is not None and host == ipaddress.ip_address(ip)
    except ValueError:
        return False


def check_view(view: ClusterView, cluster: str, endpoint: str) -> ClusterView:
    """Refuse a member list with names or URLs vmcoreos would never have made.

    Names go into the next node's systemd drop-in and set the node count, URLs
    are where the tool sends requests: only `<cluster>-NN` (NN at most
    MAX_NODE_INDEX) and http(s)://<IP>:<port> pass. A member added but not
    started yet has no name, which is fine.
    """
    pattern = re.compile(re.escape(cluster) + r"-(\d{2,})")
    for m in view.members:
        match = pattern.fullmatch(m.name)
        if m.name and (match is None or int(match.group(1)) > MAX_NODE_INDEX):
            raise EtcdError(
                f"etcd at {endpoint} lists member {m.name!r}, which is not a {cluster}-NN node name (NN at most"
                f" {MAX_NODE_INDEX}); remove that member with etcdctl, or point the cluster file at this"
                " cluster's own etcd"
            )
        bad = [u for u in m.peer_urls + m.client_urls if url_host(u) is None]
        if bad:
            raise EtcdError(
                f"etcd at {endpoint} lists member {m.name or m.id!r} with URL {bad[0]!r}, not"
                " http(s)://<IP>:<port>; remove that member with etcdctl, then run again"
            )
    return view


def _leader(endpoint: str, prefix: str) -> str | None:
    try:
        status = _post(f"{endpoint}{prefix}/maintenance/status", {})
    except (FileNotFoundError, EtcdError, requests.RequestException, ValueError):
        return None
    leader = status.get("leader")
    return format(int(leader), "x") if leader else None


def healthy(endpoint: str) -> bool:
    try:
        resp, raw = _request("GET", endpoint.rstrip("/") + "/health")
        return resp.status_code == 200 and str(_json(raw).get("health")) == "true"
    except (requests.RequestException, ValueError, EtcdError):
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
    resp, raw = _request("POST", f"{endpoint}/v2/members", json={"peerURLs": [peer_url]})
    if resp.status_code != 201:
        raise EtcdError(f"etcd refused to add member {peer_url}: {_err_text(raw)}")
    data = _json(raw)
    return Member(str(data["id"]), "", tuple(str(u) for u in data.get("peerURLs") or ()), ())


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
    resp, raw = _request("DELETE", f"{endpoint}/v2/members/{member_id_hex}")
    if resp.status_code not in (204, 410):
        raise EtcdError(f"etcd refused to remove member {member_id_hex}: {_err_text(raw)}")


# -- a lease lock on the cluster itself, for runs from more than one host ------

LOCK_PREFIX = "/vmcoreos/lock/"


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


class EtcdLock:
    """A key held under a lease: gone when released, or TTL seconds after its holder dies.

    Requests go to the first of `endpoints` that answers, so the keepalive
    follows the members that survive a rebuild; `follow` adds the client URLs
    of members that joined since. When no keepalive has got through for two
    thirds of the TTL the lease may lapse any moment, so `check` (called before
    every membership change) stops the run.
    """

    def __init__(self, endpoints: list[str] | str, cluster: str, holder: str, ttl: int = 60):
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
        """POST to the endpoint that answered last, else to the others in turn (moving the winner first)."""
        with self._mutex:
            order = list(self.endpoints)
        last: Exception | None = None
        for endpoint in order:
            try:
                data = _post(endpoint + path, body)
            except (requests.RequestException, ValueError) as exc:
                last = exc
                continue
            with self._mutex:
                if self.endpoints[0] != endpoint and endpoint in self.endpoints:
                    self.endpoints.remove(endpoint)
                    self.endpoints.insert(0, endpoint)
            return data
        raise EtcdError(f"no etcd member answers at {', '.join(order)} ({type(last).__name__})")

    def acquire(self) -> bool:
        grant = self._post_any("/v3/lease/grant", {"TTL": self.ttl})
        self.lease = grant["ID"]
        self._renewed = time.monotonic()
        key = _b64(self.key)
        txn = {
            "compare": [{"key": key, "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": key, "value": _b64(self.holder), "lease": self.lease}}],
        }
        if not self._post_any("/v3/kv/txn", txn).get("succeeded"):
            if not self._break_stale():
                self._revoke()
                return False
            if not self._post_any("/v3/kv/txn", txn).get("succeeded"):
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
        import base64
        import os
        import socket

        data = self._post_any("/v3/kv/range", {"key": _b64(self.key)})
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
            self._post_any("/v3/lease/revoke", {"ID": lease})
        return True

    def holder_of(self) -> str | None:
        import base64

        data = self._post_any("/v3/kv/range", {"key": _b64(self.key)})
        kvs = data.get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode(errors="replace") if kvs and kvs[0].get("value") else None

    def _keepalive(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                reply = self._post_any("/v3/lease/keepalive", {"ID": self.lease})
            except EtcdError:
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
            self._post_any("/v3/lease/revoke", {"ID": self.lease})
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
