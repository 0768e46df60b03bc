"""wait.timeout bounds joining only; the upload and the clones before it have limits of their own.

On the strict bed with slow tasks (import leases initialize and clones run
DELAY seconds, as full clones on real storage take minutes), a deploy spends
longer on the template and the clones than wait.timeout allows for a join.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.harness.bed import strict_bed, strict_guests
from tests.e2e.helpers import write_cluster

DELAY = 6.0  # seconds every clone task runs, and every import lease stays initializing
JOIN_TIMEOUT = 5  # wait.timeout: under DELAY, so one clone alone outlasts it


@pytest.fixture
def slow_vcsim(tmp_path):
    with strict_bed(tmp_path / "slow-vcsim", task_delay=DELAY) as sim:
        yield sim


@pytest.fixture
def slow_guestsim(slow_vcsim, tmp_path, subnet):
    yield from strict_guests(slow_vcsim, tmp_path / "slow-guestsim", subnet)


def _deploy(cli, cluster, ova, vcsim, count: int):
    return cli(["deploy", "-c", str(cluster), "--count", str(count), "--ova", str(ova["ova"]),
                "--trusted-key", str(ova["key"]), "--json"], env=vcsim.env())


def test_slow_upload_and_clones_do_not_eat_the_join_timeout(cli, slow_vcsim, slow_guestsim, signed_ova, subnet,
                                                           tmp_path):
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, extra={"wait": {"timeout": JOIN_TIMEOUT}})
    # A new cluster: the import and one batch of clones take 2 x DELAY before either member can join.
    started = time.monotonic()
    first = _deploy(cli, cluster, signed_ova, slow_vcsim, 2)
    took = time.monotonic() - started
    assert first.returncode == 0, first.stderr
    assert took > 2 * DELAY > JOIN_TIMEOUT
    nodes = json.loads(first.stdout)["nodes"]
    assert [(n["name"], n["healthy"]) for n in nodes] == [("lab-01", True), ("lab-02", True)]
    # A scale-up: two joins one after the other, each behind its own clone, each with its own deadline.
    started = time.monotonic()
    second = _deploy(cli, cluster, signed_ova, slow_vcsim, 4)
    took = time.monotonic() - started
    assert second.returncode == 0, second.stderr
    assert took > 2 * DELAY
    nodes = json.loads(second.stdout)["nodes"]
    assert [(n["name"], n["healthy"], n["action"]) for n in nodes] == [
        ("lab-01", True, "unchanged"), ("lab-02", True, "unchanged"), ("lab-03", True, "created"),
        ("lab-04", True, "created"),
    ]


@pytest.fixture
def vcsim(uploads):
    return uploads.vcsim


def test_an_upload_that_moves_no_bytes_is_cut_after_upload_stall_and_started_over(cli, uploads, guestsim, big_ova,
                                                                                   subnet, tmp_path):
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, count=1, extra={"wait": {"upload_stall": 2}})
    # Only the NFC upload carries megabytes upstream: it stops moving 3 MiB in, held until the tool gives up.
    fault = uploads.proxy.stall(None, after_bytes=3 << 20, direction="up")
    started = time.monotonic()
    run = cli(["deploy", "-c", str(cluster), "--count", "1", "--ova", str(big_ova["ova"]),
               "--trusted-key", str(big_ova["key"]), "--json"], env=uploads.env, timeout=120)
    took = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    assert fault.fired == 1
    stalled = [line for line in run.stderr.splitlines() if "moved no bytes" in line]
    assert len(stalled) == 1 and "uploading flatcar_production_vmware_ova_image.vmdk to ESXi host" in stalled[0], run.stderr
    assert "moved no bytes for 2s (stalled after" in stalled[0] and "starting over (2/3)" in stalled[0]
    assert took < 60  # the stall limit, not the 300 s default or a socket's patience
    assert json.loads(run.stdout)["nodes"][0]["healthy"]


def test_a_node_that_never_joins_after_a_slow_clone_is_named_with_the_stage_it_reached(cli, slow_vcsim, signed_ova,
                                                                                       subnet, tmp_path):
    # No guest simulator: the VM powers on and nothing boots in it. Its time starts at the power-on, so the
    # watch sees it powered on instead of timing out before its first look.
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, count=1, extra={"wait": {"timeout": 2}})
    run = _deploy(cli, cluster, signed_ova, slow_vcsim, 1)
    assert run.returncode == 4
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("vmcoreos: error: nodes did not join etcd within 2s of being powered on (wait.timeout):")
    assert "lab-01 reached 'powered on'" in last and "kept for inspection" in last
