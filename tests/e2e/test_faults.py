"""Faults on the way: broken uploads, nodes that never join, a vCenter that drops or stalls.

The fault-injecting proxy sits between vmcoreos and the simulator; every test
checks what the tool said, its exit code, and what it left in vSphere.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.helpers import inventory, write_cluster
from tests.harness.faultproxy import FaultProxy


@pytest.fixture
def vcsim(uploads):
    return uploads.vcsim


def _args(cluster, ova, *extra):
    return ["deploy", "-c", str(cluster), "--ova", str(ova["ova"]), "--trusted-key", str(ova["key"]), *extra]


def _ours(vcsim, cluster="lab"):
    return {n: v for n, v in inventory(vcsim).items() if v["extra"].get("vmcoreos.cluster") == cluster}


def test_broken_upload_is_aborted_cleaned_and_retried_from_the_start(cli, vcsim, uploads, guestsim, big_ova, subnet,
                                                                     tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=1)
    # Only the NFC upload carries megabytes upstream: this cuts it 3 MiB in, once.
    fault = uploads.proxy.reset_after(3 << 20, direction="up")
    run = cli(_args(cluster, big_ova, "--count", "1", "--json"), env=uploads.env)
    assert run.returncode == 0, run.stderr
    assert fault.fired == 1
    assert "broke off after" in run.stderr and "starting over (2/3)" in run.stderr
    ours = _ours(vcsim)
    assert sorted(n for n, v in ours.items() if v["template"]) == [json.loads(run.stdout)["template"]]
    assert sorted(n for n, v in ours.items() if not v["template"]) == ["lab-01"]


def test_upload_that_keeps_breaking_gives_up_and_leaves_nothing(cli, vcsim, uploads, big_ova, subnet, tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=1)
    fault = uploads.proxy.reset_after(3 << 20, direction="up", times=None)
    run = cli(_args(cluster, big_ova, "--count", "1"), env=uploads.env)
    assert run.returncode == 1
    assert fault.fired == 3
    assert "gave up after 3 attempts" in run.stderr and len(run.stderr.strip().splitlines()) >= 1
    assert run.stderr.strip().splitlines()[-1].startswith("vmcoreos: error:")
    assert _ours(vcsim) == {}


def test_node_that_never_joins_names_its_stage_and_is_kept(cli, vcsim, signed_ova, subnet, tmp_path):
    # No guest simulator: the VMs power on but nothing boots in them.
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=2, extra={"wait": {"timeout": 3}})
    run = cli(_args(cluster, signed_ova, "--count", "2"), env=vcsim.env())
    assert run.returncode == 4
    last = run.stderr.strip().splitlines()[-1]
    assert "lab-01 reached 'powered on'" in last and "kept for inspection" in last
    assert sorted(n for n, v in _ours(vcsim).items() if not v["template"]) == ["lab-01", "lab-02"]


def test_etcd_image_that_cannot_be_pulled_is_the_first_thing_exit_4_names(cli, vcsim, guestsim, signed_ova, subnet,
                                                                          tmp_path):
    image = "registry.invalid/coreos/etcd:v3.5.16"  # the guest simulator cannot pull from .invalid hosts
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=1,
                            extra={"wait": {"timeout": 8}, "etcd": {"image": image}})
    run = cli(_args(cluster, signed_ova, "--count", "1"), env=vcsim.env())
    assert run.returncode == 4
    last = run.stderr.strip().splitlines()[-1]
    assert "lab-01 reached 'has IP'" in last
    assert f"first check that the nodes can pull the etcd image {image}" in last and "etcd.image" in last
    assert "docker pull registry.invalid/coreos/etcd:v3.5.16" in guestsim.node("lab-01")["errors"][0]


def test_rollback_removes_what_a_failed_deploy_created(cli, vcsim, signed_ova, subnet, tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=2, extra={"wait": {"timeout": 3}})
    run = cli(_args(cluster, signed_ova, "--count", "2", "--rollback"), env=vcsim.env())
    assert run.returncode == 4
    assert "removed (--rollback)" in run.stderr.strip().splitlines()[-1]
    assert [n for n, v in _ours(vcsim).items() if not v["template"]] == []


def test_stalled_vcenter_times_out_with_a_message_not_a_hang(cli, vcsim, signed_ova, subnet, tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=1)
    with FaultProxy.for_url(vcsim.url) as proxy:
        # Let the login through, then hold every answer.
        proxy.stall(60, after_bytes=20_000, direction="down", times=None)
        env = {**vcsim.env(), "VMCOREOS_URL": proxy.url_for(vcsim.url), "VMCOREOS_API_TIMEOUT": "2"}
        run = cli(_args(cluster, signed_ova, "--count", "1"), env=env, timeout=60)
        proxy.clear()
    assert run.returncode == 1
    assert "did not answer" in run.stderr and "within 2s" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_refused_connections_to_vcenter_say_so(cli, vcsim, signed_ova, subnet, tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=1)
    with FaultProxy.for_url(vcsim.url) as proxy:
        proxy.refuse(mode="unlisten")
        env = {**vcsim.env(), "VMCOREOS_URL": proxy.url_for(vcsim.url)}
        run = cli(_args(cluster, signed_ova, "--count", "1"), env=env)
    assert run.returncode == 1
    assert "cannot reach vCenter" in run.stderr and "connection refused" in run.stderr
    assert _ours(vcsim) == {}


def _started_upload(uploads: Uploads, args, **env):
    """vmcoreos started with its uploads through the proxy, once it says it is uploading: (process, what it printed so far)."""
    import os
    import subprocess

    from tests.harness.runner import VMCOREOS

    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))}, **uploads.env, **env}
    proc = subprocess.Popen([VMCOREOS, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    for line in proc.stderr:
        seen += line
        if "uploading" in line:
            break
    return proc, seen


def test_sigterm_mid_upload_aborts_the_lease_removes_the_vm_and_releases_the_lock(vcsim, uploads, big_ova, subnet,
                                                                                   tmp_path):
    import signal

    import filelock

    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=1)
    locks = tmp_path / "locks"
    uploads.proxy.throttle(2 << 20, direction="up")  # 16 MiB at 2 MiB/s: the upload takes a while
    proc, seen = _started_upload(uploads, _args(cluster, big_ova, "--count", "1"), VMCOREOS_LOCK_DIR=str(locks))
    try:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    uploads.proxy.throttle(None)
    assert proc.returncode == 130, seen + rest
    # The signal came mid-upload: no connection carried the whole 16 MiB disk.
    assert max((c.bytes_up for c in uploads.proxy.stats.conns), default=0) < 16 << 20
    assert "interrupted" in rest.strip().splitlines()[-1]
    assert _ours(vcsim) == {}  # neither the half-imported VM nor anything else
    for path in locks.glob("*.lock"):
        lock = filelock.FileLock(str(path), timeout=0)
        lock.acquire()
        lock.release()


def test_an_ova_written_to_during_the_upload_is_not_completed(vcsim, uploads, big_ova, subnet, tmp_path):
    # The upload reads the verified descriptor; a write to that file meanwhile
    # (same inode, so the bytes on the wire may be the new ones) stops the import before the lease completes.
    import shutil

    ova = tmp_path / big_ova["ova"].name
    shutil.copyfile(big_ova["ova"], ova)
    image = {"ova": ova, "key": big_ova["key"]}
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=1)
    uploads.proxy.throttle(4 << 20, direction="up")  # 16 MiB at 4 MiB/s: time to write to the file mid-upload
    proc, seen = _started_upload(uploads, _args(cluster, image, "--count", "1", "--sig", str(big_ova["sig"])),
                                 VMCOREOS_LOCK_DIR=str(tmp_path / "locks"), VMCOREOS_CACHE_DIR=str(tmp_path / "cache"))
    try:
        with open(ova, "ab") as f:
            f.write(bytes(1024))
        seen += proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    uploads.proxy.throttle(None)
    assert proc.returncode == 3, seen
    assert "written to, replaced or renamed after it was verified" in seen.strip().splitlines()[-1]
    assert not [n for n, v in _ours(vcsim).items() if v["template"]]
