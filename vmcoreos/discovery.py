"""etcd discovery tokens minted on an etcd the user runs (`--discovery-etcd URL`).

The protocol (etcd Documentation/dev-internal/discovery_protocol.md): the
token is a directory under `/v2/keys/_etcd/registry/`, and its
`_config/size` key says how many members form the cluster; each new member
registers itself there. It needs the etcd v2 keys API, which etcd 3.4 and
3.5 serve only with `--enable-v2`.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import requests

from vmcoreos.errors import ConfigError, EtcdError
from vmcoreos.text import origin

PREFIX = "/v2/keys/_etcd/registry"
TIMEOUT = (3, 10)


def new_url(etcd_url: str, token: str | None = None) -> str:
    """The discovery URL for a fresh token (nothing is written yet)."""
    parts = urlsplit(etcd_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--discovery-etcd {parts.hostname or etcd_url!r} is not an http(s):// URL of an etcd")
    return f"{etcd_url.rstrip('/')}{PREFIX}/{token or uuid.uuid4().hex}"


def create(discovery_url: str, size: int) -> None:
    """PUT <token>/_config/size = size; refuses a token that already has one."""
    where = origin(discovery_url)
    try:
        resp = requests.put(
            discovery_url + "/_config/size", data={"value": str(size)}, params={"prevExist": "false"}, timeout=TIMEOUT
        )
    except requests.RequestException as exc:
        raise EtcdError(f"cannot reach the discovery etcd at {where}: {type(exc).__name__}") from None
    if resp.status_code == 404:
        raise EtcdError(
            f"the discovery etcd at {where} does not serve the v2 keys API; start it with --enable-v2=true"
            " (etcd 3.4/3.5) or pass etcd.discovery instead"
        )
    if resp.status_code == 412:
        raise EtcdError(f"discovery token {discovery_url.rsplit('/', 1)[-1]} already has a size; mint a new one")
    if resp.status_code not in (200, 201):
        raise EtcdError(f"the discovery etcd at {where} answered HTTP {resp.status_code} to the size key")
