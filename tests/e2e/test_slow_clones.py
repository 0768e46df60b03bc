"""Clones at real speed (issue 13): a connection lost mid-clone, and an interrupt while clones run.

The strict bed with slow tasks behaves as a real vCenter: a clone runs for
seconds, cancelable, and registers its VM only when it ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import Iterator

import filelock
import pytest

from tests.conftest import VMCOREOS
from tests.e2e.helpers import inventory, write_cluster
from tests.harness.services import GuestSim, Vcsim


def _args(cluster, ova, *extra):
    return ["deploy", "-c", str(cluster), "--ova", str(ova["ova"]), "--trusted-key", str(ova["key"]), *extra]


@contextlib.contextmanager
def _all_vms(vcsim) -> Iterator[list]:
    """Every VM in the simulator, on an API session of the block's own."""
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    si = vcsim.connect()
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        yield list(view.view)
        view.Destroy()
    finally:
        Disconnect(si)


def _nodes(vcsim, cluster="lab") -> list[str]:
    """Names of the cluster's VMs that are not templates, twins kept (a name listed twice is two VMs)."""
    with _all_vms(vcsim) as found:
        return sorted(vm.name for vm in found if not vm.config.template
                      and {o.key: o.value for o in vm.config.extraConfig or []}.get("vmcoreos.cluster") == cluster)


@pytest.fixture
def cut_vcsim(tmp_path):
    """Clones take 3 s; the answer to the second CloneVM_Task is lost (the clone itself goes ahead)."""
    sim = Vcsim(tmp_path / "vcsim", strict=True, task_delay=3, drop_answer="CloneVM_Task:2")
    try:
        yield sim.start()
    finally:
        sim.stop()


def test_connection_lost_after_a_clone_was_sent_leaves_one_vm_per_node(cli, cut_vcsim, signed_ova, subnet, tmp_path):
    guests = GuestSim(cut_vcsim, tmp_path / "guestsim", dhcp_range=f"{subnet}.100-{subnet}.199", strict=True)
    guests.start()
    try:
        cluster = write_cluster(tmp_path / "c.yaml", subnet, count=3)
        run = cli(_args(cluster, signed_ova, "--count", "3"), env=cut_vcsim.env())
    finally:
        guests.stop()
    assert run.returncode == 0, run.stderr
    # The clone whose answer was lost was found running and awaited, not sent again.
    assert _nodes(cut_vcsim) == ["lab-01", "lab-02", "lab-03"]
    assert "lab-02: the connection dropped while cloning; waiting on the clone vCenter is running" in run.stderr


@pytest.fixture
def slow_vcsim(tmp_path):
    sim = Vcsim(tmp_path / "vcsim", strict=True, task_delay=12)
    try:
        yield sim.start()
    finally:
        sim.stop()


def _tasks_running(vcsim) -> list[str]:
    """Tasks still queued or running in the simulator, as 'descriptionId entityName'."""
    with _all_vms(vcsim) as found:
        return [f"{t.info.descriptionId} {t.info.entityName}" for vm in found for t in vm.recentTask or []
                if t.info.state in ("queued", "running")]


def _sessions(vcsim) -> list[str]:
    """User agents of the sessions other than the one asking."""
    from pyVim.connect import Disconnect

    si = vcsim.connect()
    try:
        manager = si.RetrieveContent().sessionManager
        mine = manager.currentSession.key
        return [s.userAgent for s in manager.sessionList if s.key != mine]
    finally:
        Disconnect(si)


def test_sigterm_while_clones_run_cancels_them_and_leaves_nothing_within_10s(slow_vcsim, signed_ova, subnet,
                                                                            tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=3)
    locks = tmp_path / "locks"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))}, **slow_vcsim.env(),
           "VMCOREOS_LOCK_DIR": str(locks), "VMCOREOS_CACHE_DIR": str(tmp_path / "cache"),
           "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([VMCOREOS, *_args(cluster, signed_ova, "--count", "3")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = ""
        for line in proc.stderr:
            seen += line
            if "lab-03: cloning" in line:
                break
        time.sleep(1)  # every CloneVM_Task sent: the three clones run (12 s each)
        assert len(_tasks_running(slow_vcsim)) == 3, seen
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        rest = proc.communicate(timeout=60)[1]
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, seen + rest
    assert took < 10, f"exited {took:.1f}s after SIGTERM"
    assert "interrupted" in rest.strip().splitlines()[-1]
    assert _nodes(slow_vcsim) == []  # the template may stay: it is verified and reusable
    assert [n for n, v in inventory(slow_vcsim).items() if v["template"] and "lab" in n] != []
    assert _tasks_running(slow_vcsim) == []
    assert not [a for a in _sessions(slow_vcsim) if a.startswith("vmcoreos/")]
    for path in locks.glob("*.lock"):
        lock = filelock.FileLock(str(path), timeout=0)
        lock.acquire()
        lock.release()


def test_sigterm_while_nodes_are_awaited_stops_the_polling_threads_within_10s(vcsim, guestsim, signed_ova, subnet,
                                                                              tmp_path):
    # etcd never starts on the node (its image cannot be pulled): the run polls it from a thread pool
    # until wait.timeout, 120 s, unless the interrupt stops the pool.
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=2,
                            extra={"wait": {"timeout": 120}, "etcd": {"image": "registry.invalid/coreos/etcd:v3.5.16"}})
    locks = tmp_path / "locks"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))}, **vcsim.env(),
           "VMCOREOS_LOCK_DIR": str(locks), "VMCOREOS_CACHE_DIR": str(tmp_path / "cache"), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([VMCOREOS, *_args(cluster, signed_ova, "--count", "2")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 60
        while not all(_pull_failed(guestsim, n) for n in ("lab-01", "lab-02")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(1)  # the guests have their addresses: the run polls etcd now
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        proc.communicate(timeout=180)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert took < 10, f"exited {took:.1f}s after SIGTERM"
    assert not [a for a in _sessions(vcsim) if a.startswith("vmcoreos/")]
    for path in locks.glob("*.lock"):
        lock = filelock.FileLock(str(path), timeout=0)
        lock.acquire()
        lock.release()


def _pull_failed(guestsim, name: str) -> bool:
    try:
        return bool(guestsim.node(name).get("errors"))
    except (FileNotFoundError, ValueError):
        return False


def test_sigterm_while_vms_are_deleted_drops_the_queued_deletions_within_10s(cli, tmp_path, signed_ova, subnet):
    # Deleting takes 8 s and cannot be canceled; six nodes, four at a time: two wait in the queue.
    sim = Vcsim(tmp_path / "vcsim", strict=True, destroy_delay=8).start()
    guests = GuestSim(sim, tmp_path / "guestsim", dhcp_range=f"{subnet}.100-{subnet}.199", strict=True)
    try:
        guests.start()
        cluster = write_cluster(tmp_path / "c.yaml", subnet, count=6)
        assert cli(_args(cluster, signed_ova, "--count", "6"), env=sim.env()).returncode == 0
        guests.stop()
        locks = tmp_path / "locks"
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))}, **sim.env(),
               "VMCOREOS_LOCK_DIR": str(locks), "TMPDIR": str(tmp_path)}
        proc = subprocess.Popen([VMCOREOS, "destroy", "-c", str(cluster), "--yes"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            seen = ""
            for line in proc.stderr:
                seen += line
                if seen.count("powering off and deleting") == 4:
                    break
            time.sleep(1)
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            rest = proc.communicate(timeout=60)[1]
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 130, seen + rest
        assert took < 10, f"exited {took:.1f}s after SIGTERM"
        assert seen.count("powering off and deleting") + rest.count("powering off and deleting") == 4
        time.sleep(8)  # the four deletions vCenter could not cancel end on their own
        assert len(_nodes(sim)) == 2
        assert not [a for a in _sessions(sim) if a.startswith("vmcoreos/")]
        for path in locks.glob("*.lock"):
            lock = filelock.FileLock(str(path), timeout=0)
            lock.acquire()
            lock.release()
    finally:
        guests.stop()
        sim.stop()
