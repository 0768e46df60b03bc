"""Task waits are progress-based: no limit on the total time, only on how long nothing changes.

A fake clock and a scripted PropertyCollector watch (the units only): each
case lists what vCenter reports at which second, as a real full clone does
in steps, and what wait_tasks must make of it.
"""

from __future__ import annotations

import pytest

from vmcoreos.errors import VSphereError
from vmcoreos.vsphere import waits
from vmcoreos.vsphere.waits import Stall


class Clock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.mark.parametrize("looks, stalled_at", [
    ([(0, "a"), (599, "a")], None),  # the same for less than the limit
    ([(0, "a"), (600, "a")], 600),
    ([(0, "a"), (500, "b"), (1099, "b")], None),  # a change starts the clock again
    ([(0, "a"), (500, "b"), (1100, "b")], 1100),
    ([(0, "a"), (300, "b"), (600, "a"), (1199, "a")], None),  # back to an earlier value is a change too
])
def test_stall_counts_from_the_last_change(looks, stalled_at):
    clock = Clock()
    stall = Stall(600, clock.monotonic)
    start = clock.now
    for at, snapshot in looks:
        clock.now = start + at
        stall.see(snapshot)
        assert stall.stalled() == (stalled_at is not None and at >= stalled_at)


class ScriptedWatch:
    """Watch's interface over a script of (second, task index, {prop: value}) updates on a fake clock."""

    script: list = []
    clock: Clock

    def __init__(self, session, objs, props, kind):
        self.tasks = list(objs)
        self.values = {t: {} for t in self.tasks}
        self.pending = sorted(self.script, key=lambda u: u[0])
        self.start = self.clock.now
        self.calls = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def until(self, done, deadline, what):
        self.calls += 1
        while not done(self.values):
            if not self.pending or self.start + self.pending[0][0] > deadline:
                self.clock.now = max(self.clock.now, deadline)
                raise TimeoutError(what)
            at, index, props = self.pending.pop(0)
            self.clock.now = self.start + at
            self.values[self.tasks[index]].update(props)


def running(progress=None):
    return {"info.state": "running", "info.progress": progress}


DONE = {"info.state": "success", "info.result": "vm"}
QUEUED = {"info.state": "queued"}


def _steps(index, every, until):
    """A clone reporting info.progress every `every` seconds, done at `until`."""
    return [(t, index, running(t * 100 // until)) for t in range(0, until, every)] + [(until, index, DONE)]


def _later(script, by):
    return [(at + by, index, props) for at, index, props in script]


CASES = {
    # A full clone of a big disk: 80 minutes in all, a step every 5 minutes.
    "long clone with steps": ([_steps(0, 300, 4800)], 1, None),
    # Running at 40 %, then nothing for the whole limit.
    "stuck at 40%": ([[(0, 0, running(0)), (100, 0, running(40))]], 1, "made no progress for 600s (lab-01 running at 40%)"),
    # Queued behind another clone on its host for 15 minutes: the batch moves, so it is not cut.
    "queued behind another": ([_steps(0, 300, 900), [(0, 1, QUEUED)] + _later(_steps(1, 300, 900), 900)], 2, None),
    # A state change without any progress value (tasks that report none) counts as well.
    "state only": ([[(0, 0, QUEUED), (500, 0, running()), (1000, 0, DONE)]], 1, None),
    # The other clone finished; this one hangs: named alone, with its state.
    "one of two hangs": ([_steps(0, 100, 400), [(0, 1, running(10))]], 2, "made no progress for 600s (lab-02 running at 10%)"),
    # Never even started: named as queued.
    "never starts": ([[(0, 0, QUEUED)]], 1, "(lab-01 queued)"),
}


@pytest.mark.parametrize("name", CASES)
def test_wait_tasks_gives_up_only_on_a_stall(mocker, name):
    scripts, count, error = CASES[name]
    clock = Clock()
    script = [u for s in scripts for u in s]
    mocker.patch.object(waits, "Watch", type("W", (ScriptedWatch,), {"script": script, "clock": clock}))
    mocker.patch.object(waits, "time", clock)
    tasks = [object() for _ in range(count)]
    names = [f"lab-0{i + 1}" for i in range(count)]
    what = f"cloning {', '.join(names)} from lab-template"
    if error is None:
        assert waits.wait_tasks(None, tasks, stall=600, what=what, names=names) == ["vm"] * count
        return
    with pytest.raises(VSphereError) as caught:
        waits.wait_tasks(None, tasks, stall=600, what=what, names=names)
    message = caught.value.message
    assert message.startswith(what) and error in message and "wait.task_stall" in message
    assert "\n" not in message


def test_a_total_timeout_still_ends_a_cleanup_that_keeps_moving(mocker):
    clock = Clock()
    mocker.patch.object(waits, "Watch", type("W", (ScriptedWatch,), {"script": _steps(0, 10, 1000), "clock": clock}))
    mocker.patch.object(waits, "time", clock)
    with pytest.raises(VSphereError, match=r"timed out after 120s waiting for removing it \(task"):
        waits.wait_task(None, object(), timeout=120, what="removing it")
    assert clock.now == 1120.0
