"""Clones at real speed: a connection lost mid-clone, and an interrupt while clones run.

The strict bed with slow tasks behaves as a real vCenter: a clone runs for
seconds, cancelable, and registers its VM only when it ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import filelock
import pytest

from tests.harness.runner import VMCOREOS
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


@dataclass
class Interrupted:
    returncode: int
    took: float  # seconds from SIGTERM to exit
    stderr: str


def _sigterm(vcsim, args: list[str], tmp_path, ready: Callable[[str], bool], settle: float = 1.0) -> Interrupted:
    """vmcoreos run against vcsim and sent SIGTERM `settle` seconds after ready(its stderr so far) first holds."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VMCOREOS_", "GOVC_"))}, **vcsim.env(),
           "VMCOREOS_LOCK_DIR": str(tmp_path / "locks"), "VMCOREOS_CACHE_DIR": str(tmp_path / "cache"),
           "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([VMCOREOS, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not ready("".join(lines)):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        time.sleep(settle)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        proc.wait(timeout=180)
        took = time.monotonic() - sent
        reader.join(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Interrupted(proc.returncode, took, "".join(lines))


def _nothing_held(vcsim, tmp_path) -> None:
    """No vmcoreos session is left on vcsim and every lock file the run had is free."""
    assert not [a for a in _sessions(vcsim) if a.startswith("vmcoreos/")]
    for path in (tmp_path / "locks").glob("*.lock"):
        lock = filelock.FileLock(str(path), timeout=0)
        lock.acquire()
        lock.release()


def test_sigterm_while_clones_run_cancels_them_and_leaves_nothing_within_10s(slow_vcsim, signed_ova, subnet,
                                                                            tmp_path):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=3)
    # A second after the last CloneVM_Task was sent the three clones run (12 s each).
    run = _sigterm(slow_vcsim, _args(cluster, signed_ova, "--count", "3"), tmp_path,
                   lambda seen: "lab-03: cloning" in seen and len(_tasks_running(slow_vcsim)) == 3)
    assert run.returncode == 130, run.stderr
    assert run.took < 10, f"exited {run.took:.1f}s after SIGTERM"
    assert "interrupted" in run.stderr.strip().splitlines()[-1]
    assert _nodes(slow_vcsim) == []  # the template may stay: it is verified and reusable
    assert [n for n, v in inventory(slow_vcsim).items() if v["template"] and "lab" in n] != []
    assert _tasks_running(slow_vcsim) == []
    _nothing_held(slow_vcsim, tmp_path)


def test_sigterm_while_nodes_are_awaited_stops_the_polling_threads_within_10s(vcsim, guestsim, signed_ova, subnet,
                                                                              tmp_path):
    # etcd never starts on the node (its image cannot be pulled): the run polls it from a thread pool
    # until wait.timeout, 120 s, unless the interrupt stops the pool.
    cluster = write_cluster(tmp_path / "c.yaml", subnet, count=2,
                            extra={"wait": {"timeout": 120}, "etcd": {"image": "registry.invalid/coreos/etcd:v3.5.16"}})
    # Once both guests tried to pull the image they have their addresses: the run polls etcd.
    run = _sigterm(vcsim, _args(cluster, signed_ova, "--count", "2"), tmp_path,
                   lambda seen: all(_pull_failed(guestsim, n) for n in ("lab-01", "lab-02")))
    assert run.returncode == 130, run.stderr
    assert run.took < 10, f"exited {run.took:.1f}s after SIGTERM"
    _nothing_held(vcsim, tmp_path)


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
        run = _sigterm(sim, ["destroy", "-c", str(cluster), "--yes"], tmp_path,
                       lambda seen: seen.count("powering off and deleting") == 4)
        assert run.returncode == 130, run.stderr
        assert run.took < 10, f"exited {run.took:.1f}s after SIGTERM"
        assert run.stderr.count("powering off and deleting") == 4
        time.sleep(8)  # the four deletions vCenter could not cancel end on their own
        assert len(_nodes(sim)) == 2
        _nothing_held(sim, tmp_path)
    finally:
        guests.stop()
        sim.stop()
