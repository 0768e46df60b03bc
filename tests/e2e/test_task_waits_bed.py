"""Task waits on the strict bed with slow clones: a clone that reports progress runs past the stall limit,
one that reports nothing for it is given up, canceled and removed."""

from __future__ import annotations

import contextlib
import time

import pytest

from tests.e2e.direct import session_on, target
from tests.harness.services import Vcsim
from vmcoreos.errors import VSphereError
from vmcoreos.vsphere import targets, vms

pytestmark = pytest.mark.e2e  # every test starts build/vcsim

DELAY = 3.0  # seconds each clone runs
STALL = 1.0  # the limit under test: well under DELAY, well over the steps' 0.3 s


@contextlib.contextmanager
def _bed(workdir, **options):
    sim = Vcsim(workdir, strict=True, drs=True, task_delay=DELAY, **options).start()
    session = None
    try:
        session = session_on(sim)
        yield session
    finally:
        if session is not None:
            session.close()
        sim.stop()


def _clone(session, name: str):
    placement = targets.locate(session, target())
    ref = session.content.searchIndex.FindByInventoryPath("DC0/vm/DC0_C0_RP0_VM0")
    source = vms.VmInfo(ref, "DC0_C0_RP0_VM0", False, "poweredOff", None, None)
    spec = vms.clone_spec(placement, cpus=1, memory_mb=256, extra=vms.marks("lab", "node"))
    return placement, lambda: vms.clone_many(session, source, [(name, spec)], placement, cluster="lab", stall=STALL)[0]


def test_a_clone_reporting_progress_runs_past_the_stall_limit(tmp_path):
    with _bed(tmp_path / "vcsim", task_progress_steps=10) as session:
        placement, clone = _clone(session, "lab-01")
        started = time.monotonic()
        made = clone()
        assert time.monotonic() - started >= DELAY > 2 * STALL
        found = vms.list_vms(session, placement, {"lab-01"})
        assert [v.ref for v in found] == [made]
        vms.destroy(session, found[0], "lab")


def test_a_clone_without_progress_is_given_up_naming_it_and_removed(tmp_path):
    with _bed(tmp_path / "vcsim") as session:
        placement, clone = _clone(session, "lab-02")
        started = time.monotonic()
        with pytest.raises(VSphereError) as caught:
            clone()
        took = time.monotonic() - started
        assert caught.value.message.startswith(
            f"cloning lab-02 from DC0_C0_RP0_VM0 made no progress for {STALL:g}s (lab-02 running at 0%)")
        assert "wait.task_stall" in caught.value.message
        assert STALL <= took < DELAY
        time.sleep(DELAY)  # had the cancel not reached the task, its VM would register by now
        assert vms.list_vms(session, placement, {"lab-02"}) == []
