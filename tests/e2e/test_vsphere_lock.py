"""Two hosts, one new cluster: before etcd exists the vSphere lock folder keeps them apart.

Each run has its own VMCOREOS_LOCK_DIR, as two hosts would, so the host lock
file never meets the other run's; only the lock folder in vSphere does.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.harness.bed import strict_bed
from tests.harness.runner import LOCKED_IN, LOCK_DIRS, OUTPUT_LOG, VMCOREOS
from tests.e2e.helpers import inventory, write_cluster

LOCK_FOLDER = "vmcoreos-lock-lab"


@pytest.fixture
def strict_vcsim(tmp_path):
    """Here the strict bed's clones and imports take a while (and so strict_guestsim's bed's), so two deploys
    started together overlap."""
    with strict_bed(tmp_path / "slow-vcsim", task_delay=1.5) as sim:
        yield sim


def _args(cluster, ova, *extra):
    return ["deploy", "-c", str(cluster), "--ova", str(ova["ova"]), "--trusted-key", str(ova["key"]), *extra]


def _start(sim, args, lock_dir: Path, **env) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))}
    full.update(sim.env(), VMCOREOS_LOCK_DIR=str(lock_dir), VMCOREOS_CACHE_DIR=str(lock_dir.parent / "cache"), **env)
    LOCK_DIRS.add(lock_dir)
    return subprocess.Popen([VMCOREOS, *args], env=full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    OUTPUT_LOG.append(out + err)
    return proc.returncode, out, err


def _lock_folders(sim) -> list[str]:
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    si = sim.connect()
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Folder], True)
        names = sorted(f.name for f in view.view if f.name.startswith("vmcoreos-lock-"))
        view.Destroy()
        return names
    finally:
        Disconnect(si)


def _nodes(sim, cluster="lab") -> list[str]:
    return sorted(n for n, v in inventory(sim).items()
                  if v["extra"].get("vmcoreos.cluster") == cluster and not v["template"])


def test_two_deploys_of_one_new_cluster_from_two_hosts_one_runs_one_exits_5(strict_vcsim, strict_guestsim, signed_ova,
                                                                           subnet, tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=2)
    dirs = [tmp_path / f"host-{i}" / "locks" for i in (1, 2)]
    procs = [_start(strict_vcsim, _args(cluster, signed_ova), d) for d in dirs]
    results = [_finish(p) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 5], results
    winner = next(i for i, (code, _, _) in enumerate(results) if code == 0)
    LOCKED_IN.add(dirs[winner])
    loser_err = results[1 - winner][2].strip()
    # One line: who holds the lock (the winner's pid, since, until) and what to do.
    assert loser_err.count("\n") == 0, loser_err
    assert "is locked by another vmcoreos run" in loser_err and f"pid {procs[winner].pid}" in loser_err
    assert " since " in loser_err and " until " in loser_err and f"remove the folder {LOCK_FOLDER!r}" in loser_err
    assert _nodes(strict_vcsim) == ["lab-01", "lab-02"]
    assert _lock_folders(strict_vcsim) == []


def test_an_expired_lock_is_broken_with_a_notice_naming_its_old_owner(vcsim, guestsim, signed_ova, subnet, tmp_path):
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    from vmcoreos.vsphere.folderlock import FIELD, Holder

    si = vcsim.connect()
    try:
        content = si.RetrieveContent()
        now = si.CurrentTime().timestamp()
        dc = next(e for e in content.rootFolder.childEntity if isinstance(e, vim.Datacenter))
        folder = dc.vmFolder.CreateFolder(LOCK_FOLDER)
        key = content.customFieldsManager.AddCustomFieldDef(name=FIELD, moType=vim.Folder).key
        old = Holder("cron-2.example", 777, "ops", "ops@vsphere.local", now - 900, now - 600)
        content.customFieldsManager.SetField(entity=folder, key=key, value=old.value())
    finally:
        Disconnect(si)
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=1)
    code, _, err = _finish(_start(vcsim, _args(cluster, signed_ova), tmp_path / "locks"))
    assert code == 0, err
    LOCKED_IN.add(tmp_path / "locks")
    notice = [line for line in err.splitlines() if "expired vSphere lock" in line]
    assert len(notice) == 1 and "'cron-2.example'" in notice[0] and "pid 777" in notice[0], err
    assert _nodes(vcsim) == ["lab-01"]
    assert _lock_folders(vcsim) == []


def test_the_lock_is_released_when_the_deploy_fails(vcsim, signed_ova, subnet, tmp_path):
    # No guest simulator: the node powers on but never joins (exit 4).
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=1, extra={"wait": {"timeout": 3}})
    proc = _start(vcsim, _args(cluster, signed_ova), tmp_path / "locks")
    seen = _until(proc, "waiting for")
    assert _lock_folders(vcsim) == [LOCK_FOLDER], seen  # held while the run waits
    code, _, rest = _finish(proc)
    assert code == 4, seen + rest
    assert _lock_folders(vcsim) == []


def _until(proc: subprocess.Popen, words: tuple[str, ...] | str) -> str:
    """What proc printed on stderr up to the first line with one of words."""
    seen = ""
    for line in proc.stderr:
        seen += line
        if any(w in line for w in ([words] if isinstance(words, str) else words)):
            break
    return seen


def test_the_lock_is_released_on_sigterm(strict_vcsim, signed_ova, subnet, tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=1)
    proc = _start(strict_vcsim, _args(cluster, signed_ova), tmp_path / "locks")
    seen = _until(proc, ("importing", "cloning"))  # the lock is held; the slow import or clone has begun
    assert _lock_folders(strict_vcsim) == [LOCK_FOLDER], seen
    proc.send_signal(signal.SIGTERM)
    code, _, rest = _finish(proc, timeout=60)
    assert code == 130, seen + rest
    assert _lock_folders(strict_vcsim) == []


def test_destroy_leaves_another_runs_lock_folder_alone(cli, vcsim, guestsim, signed_ova, subnet, tmp_path):
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=1)
    run = cli(_args(cluster, signed_ova), env=vcsim.env())
    assert run.returncode == 0, run.stderr
    si = vcsim.connect()
    try:
        content = si.RetrieveContent()
        dc = next(e for e in content.rootFolder.childEntity if isinstance(e, vim.Datacenter))
        dc.vmFolder.CreateFolder(LOCK_FOLDER)  # a deploy of another host is taking the lock right now
    finally:
        Disconnect(si)
    run = cli(["destroy", "-c", str(cluster), "--yes", "--templates"], env=vcsim.env())
    assert run.returncode == 0, run.stderr
    assert _nodes(vcsim) == []
    assert _lock_folders(vcsim) == [LOCK_FOLDER]


def test_a_user_who_may_not_create_the_lock_folder_is_told_before_any_upload(cli, signed_ova, subnet, tmp_path):
    with strict_bed(tmp_path / "deny-vcsim", deny=("Folder.Create",)) as sim:
        cluster = write_cluster(tmp_path / "c.yaml", subnet, count=1)
        run = cli(_args(cluster, signed_ova), env=sim.env())
        assert run.returncode == 2, run.stderr
        last = run.stderr.strip().splitlines()[-1]
        assert "lacks the privilege Folder.Create on folder the datacenter's VM folder" in last
        assert "uploading" not in run.stderr
        assert _lock_folders(sim) == [] and not [n for n in inventory(sim) if n.startswith("lab-")]
