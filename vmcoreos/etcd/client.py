"""The HTTP edge to etcd: one session per run, the API prefix read once per endpoint.

Membership goes through the v3 JSON gateway, whose prefix depends on the
server's version (`/v3` since 3.4, `/v3beta` in 3.3, `/v3alpha` before), and
falls back to v2 `/v2/members` for etcd 2. The version is asked once per
endpoint (`GET /version`) instead of probing every prefix on every call; a
404 on the remembered prefix (a node rebuilt with another etcd at the same
address) makes the client ask again, once.

Whatever etcd answers is untrusted input: every reply is read with a size
limit and etcd's error text is quoted before it is shown.
"""

from __future__ import annotations

import json
import threading
import time

import requests
import tenacity

from vmcoreos.errors import EtcdError
from vmcoreos.http_deadlines import WatchedAdapter, within
from vmcoreos.etcd.view import ClusterView, Member

TIMEOUT = (3, 5)
# The wall clock one request may take, however etcd (or whoever answers there) paces its bytes.
REQUEST_LIMIT = 15.0
# A member list of a few hundred members is well under this; anything larger is not an etcd we want.
MAX_REPLY_BYTES = 1 << 20
V2 = ""  # the "prefix" of an etcd without the v3 gateway

# With strict reconfig checks (the default) etcd refuses a membership change until every
# member has been connected for 5 s, and one that would leave too few started members.
_TRANSIENT = ("unhealthy cluster", "not enough started members", "too many requests", "leader changed")
RECONFIG_PATIENCE = 60.0


class EtcdBusy(EtcdError):
    """etcd refused a membership change for now (its strict reconfig check); worth retrying."""


def v3_prefix(server_version: str) -> str:
    """The JSON gateway prefix etcd <server_version> serves; V2 for etcd 2 and anything unreadable."""
    try:
        major, minor = (int(p) for p in server_version.split(".")[:2])
    except ValueError:
        return V2
    if major < 3:
        return V2
    if (major, minor) >= (3, 4):
        return "/v3"
    return "/v3beta" if minor == 3 else "/v3alpha"


class Client:
    """One requests session for every etcd call of a run, trusting `ca_file` for https client URLs."""

    def __init__(self, ca_file: str | None = None, scheme: str = "http"):
        self.verify: bool | str = str(ca_file) if ca_file else True
        self.scheme = scheme
        self.session = requests.Session()
        # wait_joined polls up to 16 members at once; a smaller pool would log "pool is full" warnings.
        adapter = WatchedAdapter(pool_connections=32, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._prefixes: dict[str, str] = {}
        self._mutex = threading.Lock()

    def close(self) -> None:
        self.session.close()

    # -- one request ---------------------------------------------------------------

    def request(self, method: str, url: str, **kwargs) -> tuple[requests.Response, bytes]:
        """One request whose reply body is read up to MAX_REPLY_BYTES, never more, within REQUEST_LIMIT."""
        if self.scheme == "https" and url.startswith("http://"):
            # etcd.scheme https: a member advertising http:// is still spoken to over TLS, never in the clear.
            url = "https://" + url[len("http://"):]
        too_slow = lambda: f"etcd at {url} did not answer within {REQUEST_LIMIT:g}s"  # noqa: E731
        with within(time.monotonic() + REQUEST_LIMIT, f"etcd {url}", too_slow, EtcdError), \
                self.session.request(method, url, timeout=TIMEOUT, verify=self.verify, stream=True, **kwargs) as resp:
            body = bytearray()
            for chunk in resp.iter_content(64 << 10):
                body += chunk
                if len(body) > MAX_REPLY_BYTES:
                    raise EtcdError(
                        f"etcd at {url} sent a reply over {MAX_REPLY_BYTES >> 20} MiB; it is not a vmcoreos etcd"
                        " member, check which machine answers there"
                    )
            return resp, bytes(body)

    def post(self, url: str, body: dict) -> dict:
        """POST JSON; FileNotFoundError on 404 (no such API here), EtcdBusy/EtcdError on other errors."""
        resp, raw = self.request("POST", url, data=json.dumps(body), headers={"Content-Type": "application/json"})
        if resp.status_code == 404:
            raise FileNotFoundError(url)
        if resp.status_code >= 400:
            text = err_text(raw)
            kind = EtcdBusy if any(t in text for t in _TRANSIENT) else EtcdError
            raise kind(f"etcd at {url} answered HTTP {resp.status_code}: {text}")
        return json_object(raw)

    # -- which API the endpoint serves -------------------------------------------------

    def prefix(self, endpoint: str, *, fresh: bool = False) -> str:
        """The v3 gateway prefix of endpoint (V2 when it has none), from its /version, asked once."""
        endpoint = endpoint.rstrip("/")
        with self._mutex:
            known = None if fresh else self._prefixes.get(endpoint)
        if known is not None:
            return known
        resp, raw = self.request("GET", f"{endpoint}/version")
        if resp.status_code == 404:
            found = V2
        elif resp.status_code != 200:
            raise EtcdError(f"etcd at {endpoint} answered HTTP {resp.status_code} for /version: {err_text(raw)}")
        else:
            found = v3_prefix(str(json_object(raw).get("etcdserver", "")))
        with self._mutex:
            self._prefixes[endpoint] = found
        return found

    def v3(self, endpoint: str, path: str, body: dict) -> tuple[str, dict] | None:
        """(prefix, reply) of a v3 gateway call; None when the endpoint has no v3 gateway (use v2)."""
        endpoint = endpoint.rstrip("/")
        for fresh in (False, True):
            prefix = self.prefix(endpoint, fresh=fresh)
            if prefix == V2:
                return None
            try:
                return prefix, self.post(f"{endpoint}{prefix}{path}", body)
            except FileNotFoundError:
                continue  # ask /version again: another etcd may answer at this address now
        return None

    # -- the calls -----------------------------------------------------------------------

    def member_list(self, endpoint: str) -> ClusterView:
        endpoint = endpoint.rstrip("/")
        answer = self.v3(endpoint, "/cluster/member/list", {})
        if answer is not None:
            prefix, data = answer
            members = [_v3_member(m) for m in data.get("members") or []]
            cluster_id = _hex_id((data.get("header") or {}).get("cluster_id"))
            return ClusterView(members, self.leader(endpoint), f"{prefix}/cluster/member/list", cluster_id=cluster_id)
        resp, raw = self.request("GET", f"{endpoint}/v2/members")
        if resp.status_code != 200:
            raise EtcdError(f"etcd at {endpoint} serves no membership API (HTTP {resp.status_code})")
        members = [
            Member(str(m["id"]), str(m.get("name", "")), tuple(str(u) for u in m.get("peerURLs") or ()),
                   tuple(str(u) for u in m.get("clientURLs") or ()))
            for m in json_object(raw).get("members") or []
        ]
        return ClusterView(members, None, "/v2/members", cluster_id=_hex_id(resp.headers.get("X-Etcd-Cluster-Id")))

    def leader(self, endpoint: str) -> str | None:
        """The leader's hex id from /maintenance/status; None when it cannot be told."""
        try:
            answer = self.v3(endpoint, "/maintenance/status", {})
        except (FileNotFoundError, EtcdError, requests.RequestException, ValueError):
            return None
        leader = answer[1].get("leader") if answer else None
        return format(int(leader), "x") if leader else None

    def healthy(self, endpoint: str) -> bool:
        try:
            resp, raw = self.request("GET", endpoint.rstrip("/") + "/health")
            return resp.status_code == 200 and str(json_object(raw).get("health")) == "true"
        except (requests.RequestException, ValueError, EtcdError):
            return False

    def member_add(self, endpoint: str, peer_url: str) -> Member:
        return _patiently(self._member_add, endpoint, peer_url)

    def _member_add(self, endpoint: str, peer_url: str) -> Member:
        endpoint = endpoint.rstrip("/")
        answer = self.v3(endpoint, "/cluster/member/add", {"peerURLs": [peer_url], "isLearner": False})
        if answer is not None:
            return _v3_member(answer[1].get("member") or {})
        resp, raw = self.request("POST", f"{endpoint}/v2/members", json={"peerURLs": [peer_url]})
        if resp.status_code != 201:
            raise EtcdError(f"etcd refused to add member {peer_url}: {err_text(raw)}")
        data = json_object(raw)
        return Member(str(data["id"]), "", tuple(str(u) for u in data.get("peerURLs") or ()), ())

    def member_remove(self, endpoint: str, member_id_hex: str) -> None:
        _patiently(self._member_remove, endpoint, member_id_hex)

    def _member_remove(self, endpoint: str, member_id_hex: str) -> None:
        endpoint = endpoint.rstrip("/")
        if self.v3(endpoint, "/cluster/member/remove", {"ID": str(int(member_id_hex, 16))}) is not None:
            return
        resp, raw = self.request("DELETE", f"{endpoint}/v2/members/{member_id_hex}")
        if resp.status_code not in (204, 410):
            raise EtcdError(f"etcd refused to remove member {member_id_hex}: {err_text(raw)}")

    def move_leader(self, leader_endpoint: str, target_id_hex: str) -> None:
        """Hand leadership to another member before the leader is removed (one election, on our terms)."""
        self.v3(leader_endpoint, "/maintenance/transfer-leadership", {"targetID": str(int(target_id_hex, 16))})


def _patiently(fn, *args):
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(EtcdBusy),
        wait=tenacity.wait_exponential(multiplier=0.25, max=3),
        stop=tenacity.stop_after_delay(RECONFIG_PATIENCE),
        reraise=True,
    )
    return retrying(fn, *args)


def json_object(body: bytes) -> dict:
    data = json.loads(body or b"{}")
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def err_text(raw: bytes) -> str:
    """etcd's error message, quoted: it is shown to the user and may carry anything."""
    try:
        data = json_object(raw)
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
