"""Wall-clock deadlines that hold while a read is blocked: a vCenter that accepts and never answers,
and one that answers a byte at a time just inside the socket timeout."""

from __future__ import annotations

import time

import pytest

from tests.e2e.helpers import write_cluster
from tests.harness.silentpeer import SilentPeer, server_context

TLS_RECORD_16K = b"\x16\x03\x03\x40\x00"  # a handshake record of 16 KiB: the client waits for all of it


def _status(cli, tmp_path, subnet, peer: SilentPeer) -> tuple[float, str]:
    """`status` against the peer with VMCOREOS_API_TIMEOUT=5: (seconds it took, its last stderr line)."""
    cluster = write_cluster(tmp_path / "c.yaml", subnet)
    env = {"VMCOREOS_URL": peer.url, "VMCOREOS_USERNAME": "u", "VMCOREOS_PASSWORD": "p",
           "VMCOREOS_INSECURE": "1", "VMCOREOS_API_TIMEOUT": "5", "VMCOREOS_LOCK_DIR": str(tmp_path / "locks"),
           "VMCOREOS_CACHE_DIR": str(tmp_path / "cache")}
    started = time.monotonic()
    run = cli(["status", "-c", str(cluster)], env=env, timeout=120)
    took = time.monotonic() - started
    assert run.returncode != 0, run.output
    assert "Traceback" not in run.output
    return took, run.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("trickle", [None, 4.0])
def test_a_vcenter_that_never_answers_ends_status_within_30s_naming_it(cli, tmp_path, subnet, trickle):
    with SilentPeer(trickle=trickle, prefix=TLS_RECORD_16K) as peer:
        took, last = _status(cli, tmp_path, subnet, peer)
    assert took < 30, f"status took {took:.1f}s"
    assert f"vCenter 127.0.0.1:{peer.port} did not" in last and "within" in last, last


def test_a_vcenter_that_answers_a_byte_at_a_time_is_cut_at_its_deadline(cli, tmp_path, subnet):
    # TLS completes; then the HTTP answer comes one byte every 4 s, inside the 5 s socket timeout: each
    # read returns, and only a wall-clock deadline that cuts the blocked read can end it.
    with SilentPeer(trickle=4.0, prefix=b"HTTP/1.1 200 OK\r\nX-Slow: ", tls=server_context(tmp_path)) as peer:
        took, last = _status(cli, tmp_path, subnet, peer)
    assert took < 30, f"status took {took:.1f}s"
    assert f"vCenter 127.0.0.1:{peer.port} did not finish the connection" in last and "within 15s" in last, last
