"""One key put and read through the v3 gateway: the data check between the steps of a roll.

etcd2 (legacy CoreOS) has no v3 gateway: both calls then say so (False, None)
and the roll checks health alone.
"""

from __future__ import annotations

import base64


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def put_key(client, endpoint: str, key: str, value: str) -> bool:
    """Write key=value through the run's client; False when the endpoint has no v3 API."""
    return client.v3(endpoint, "/kv/put", {"key": _b64(key), "value": _b64(value)}) is not None


def get_key(client, endpoint: str, key: str) -> str | None:
    """key's value as this member serves it (a linearizable read through the leader); None when absent or no v3."""
    answer = client.v3(endpoint, "/kv/range", {"key": _b64(key)})
    if answer is None:
        return None
    kvs = answer[1].get("kvs")
    if not isinstance(kvs, list) or not kvs or not isinstance(kvs[0], dict):
        return None
    try:
        return base64.b64decode(str(kvs[0].get("value", "")), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None  # not what was written: the caller reports the mismatch
