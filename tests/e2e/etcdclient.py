"""A tiny etcd v3 JSON-gateway client for tests: keys in, keys out, leader watch."""

from __future__ import annotations

import base64
import threading
import time

import requests


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def put(endpoint: str, key: str, value: str) -> None:
    resp = requests.post(f"{endpoint}/v3/kv/put", json={"key": _b64(key), "value": _b64(value)}, timeout=5)
    resp.raise_for_status()


def get_prefix(endpoint: str, prefix: str) -> dict[str, str]:
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    resp = requests.post(
        f"{endpoint}/v3/kv/range", json={"key": _b64(prefix), "range_end": _b64(end), "limit": 0}, timeout=5
    )
    resp.raise_for_status()
    return {
        base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
        for kv in resp.json().get("kvs") or []
    }


def write_keys(endpoint: str, n: int, prefix: str = "/data/") -> dict[str, str]:
    written = {f"{prefix}{i:04d}": f"value-{i}-{'x' * (i % 7)}" for i in range(n)}
    session = requests.Session()
    for key, value in written.items():
        session.post(f"{endpoint}/v3/kv/put", json={"key": _b64(key), "value": _b64(value)}, timeout=5).raise_for_status()
    return written


def members(endpoint: str) -> list[dict]:
    return requests.post(f"{endpoint}/v3/cluster/member/list", json={}, timeout=5).json()["members"]


class LeaderWatch:
    """Checks every 100 ms whether any node reports a leader; records the longest leaderless stretch."""

    def __init__(self, endpoints: list[str], period: float = 0.1):
        self.endpoints = endpoints
        self.period = period
        self.longest_gap = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _has_leader(self) -> bool:
        for ep in self.endpoints:
            try:
                status = requests.post(f"{ep}/v3/maintenance/status", json={}, timeout=0.3).json()
            except (requests.RequestException, ValueError):
                continue
            if status.get("leader") and status.get("leader") != "0":
                return True
        return False

    def _run(self) -> None:
        gap_start = None
        while not self._stop.is_set():
            now = time.monotonic()
            self.samples += 1
            if self._has_leader():
                gap_start = None
            else:
                gap_start = gap_start or now
                self.longest_gap = max(self.longest_gap, now - gap_start)
            self._stop.wait(self.period)

    def __enter__(self) -> "LeaderWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
