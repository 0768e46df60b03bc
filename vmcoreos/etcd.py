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


def _post(url: str, body: dict) -> dict:
    resp = requests.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    if resp.status_code == 404:
        raise FileNotFoundError(url)
    if resp.status_code >= 400:
        raise EtcdError(f"etcd at {url} answered HTTP {resp.status_code}: {_err_text(resp)}")
    return resp.json()


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
