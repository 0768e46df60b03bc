"""Waiting on vSphere without sleep loops: one PropertyCollector filter, WaitForUpdatesEx.

The server holds each call until something changes (or WAIT_POLL_SECONDS
pass), so a wait costs a handful of requests however long it takes.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable

from pyVmomi import vim, vmodl

from vmcoreos.errors import VSphereError
from vmcoreos.vsphere.faults import MissingProperty, permission_denied
from vmcoreos.vsphere.session import Session, poll_seconds

PC = vmodl.query.PropertyCollector
REOPENS = 3  # re-made collectors in a row, without an update in between, before a wait gives up

# A private collector per thread and session, reused by the thread's waits one after another: its
# filter and version interfere with nobody's, and a wait costs a filter, not a collector (one
# request less each; vCenter removes the collectors when the session logs out).
_collectors = threading.local()


def _collector(session: Session, fresh: bool = False):
    held = getattr(_collectors, "by_session", None)
    if held is None:
        held = _collectors.by_session = {}
    if fresh or id(session) not in held:
        held[id(session)] = (session, session.content.propertyCollector.CreatePropertyCollector())
    return held[id(session)][1]


def _forget_collector(session: Session) -> None:
    getattr(_collectors, "by_session", {}).pop(id(session), None)


class Watch:
    """Current values of props on objs, kept up to date by WaitForUpdatesEx.

    The collector and its filter belong to the session that made them: when vCenter
    ends the session (the stub guard logs in again), they are gone, and the wait
    makes them again on the new session and carries on from the values as they are then.
    """

    def __init__(self, session: Session, objs: Iterable, props: list[str], kind: type):
        self.session = session
        self.values: dict[Any, dict[str, Any]] = {o: {} for o in objs}
        self.props, self.kind = props, kind
        self.pc = self.filter = None
        self._open()

    def _open(self, fresh: bool = False) -> None:
        # The thread's private collector (see _collector): a wait costs a filter on it, not a collector.
        self.pc = _collector(self.session, fresh=fresh)
        while True:
            watched = [o for o, v in self.values.items() if not v.get("_gone")]
            spec = PC.FilterSpec(
                objectSet=[PC.ObjectSpec(obj=o, skip=False) for o in watched],
                propSet=[PC.PropertySpec(type=self.kind, pathSet=self.props, all=False)],
            )
            try:
                self.filter = self.pc.CreateFilter(spec, partialUpdates=True)
                break
            except vmodl.fault.ManagedObjectNotFound as exc:
                if exc.obj in watched:
                    # Gone while the old filter could not tell us (a re-made filter refuses it): as a "leave" would.
                    self.values[exc.obj] = {"_gone": True}
                    continue
                if fresh:
                    raise
                # The thread's collector went with an earlier session (vCenter ended it, the guard logged
                # in again): a new one, once.
                self.pc, fresh = _collector(self.session, fresh=True), True
        self.version = ""

    def _reopen(self) -> None:
        self.close()
        # The new filter's first update holds every value as it is now; what the old one
        # reported may have been removed since.
        self.values = {o: v if v.get("_gone") else {} for o, v in self.values.items()}
        self._open(fresh=True)

    def close(self) -> None:
        try:
            self.filter.DestroyPropertyFilter()
        except Exception:
            # A filter left on the collector would keep reporting to the next wait: drop the collector.
            _forget_collector(self.session)
            try:
                self.pc.Destroy()
            except Exception:
                pass

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def until(self, done: Callable[[dict[Any, dict[str, Any]]], bool], deadline: float, what: str) -> None:
        reopened = 0
        while True:
            if done(self.values):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(what)
            wait = max(1, min(poll_seconds(), int(remaining + 0.999)))
            generation = self.session.generation
            try:
                update = self.pc.WaitForUpdatesEx(self.version, PC.WaitOptions(maxWaitSeconds=wait))
            except (vmodl.fault.ManagedObjectNotFound, vim.fault.NotAuthenticated):
                # The collector went with an expired session. Twice in a row without a re-login
                # in between means it is not that.
                if reopened >= REOPENS or (reopened and self.session.generation == generation):
                    raise
                reopened += 1
                self._reopen()
                continue
            reopened = 0
            if update is None:
                continue
            self.version = update.version
            for fs in update.filterSet or []:
                if fs.filter != self.filter:
                    continue  # only this wait's filter counts
                for obj in fs.objectSet or []:
                    if obj.kind == "leave":
                        self.values[obj.obj] = {"_gone": True}
                        continue
                    if obj.missingSet:  # a property vCenter would not give is an error, never "no value"
                        raise MissingProperty(obj.obj, obj.missingSet[0])
                    props = self.values.setdefault(obj.obj, {})
                    for change in obj.changeSet or []:
                        if change.op in ("remove", "indirectRemove"):
                            props.pop(change.name, None)
                        else:
                            props[change.name] = change.val


# Defaults for the progress-based limits (cluster file wait.task_stall, wait.upload_stall). A full clone of a
# big disk on real storage takes many minutes, and vCenter moves info.progress in steps, with pauses of
# a minute or more between some of them (or none while a task is queued behind others on its host).
TASK_STALL = 600.0
TASK_PROPS = ["info.state", "info.error", "info.result", "info.progress"]


class Stall:
    """How long watched values have stayed the same, against a limit; the clock is injectable for tests."""

    def __init__(self, limit: float, clock: Callable[[], float] | None = None):
        self.limit = limit
        self.clock = clock or time.monotonic
        self.seen: Any = object()  # equal to no snapshot: the first look always counts as a change
        self.since = self.clock()

    def see(self, snapshot: Any) -> bool:
        """Note what the values are now; True if they changed since the last look (the clock starts again)."""
        if snapshot == self.seen:
            return False
        self.seen, self.since = snapshot, self.clock()
        return True

    @property
    def deadline(self) -> float:
        return self.since + self.limit

    def stalled(self) -> bool:
        return self.clock() >= self.deadline


def until_stalled(watch: Watch, done: Callable[[dict], bool], progress: Callable[[dict], Any], stall: Stall,
                  what: str, ends: float | None = None) -> None:
    """watch.until(done) for as long as progress(values) keeps changing; TimeoutError once it has not
    for stall.limit seconds (or at ends). Watch.until takes a fixed deadline, so every change ends one
    call and the next starts with the moved deadline (no extra request: done is checked first)."""
    def done_or_moved(values) -> bool:
        return done(values) or stall.see(progress(values))

    while not done(watch.values):
        deadline = stall.deadline if ends is None else min(stall.deadline, ends)
        watch.until(done_or_moved, deadline, what)


def _task_progress(tasks: list) -> Callable[[dict], tuple]:
    # A batch moves while any of its tasks changes state (queued, running) or progress: a task queued
    # behind the others on its host shows nothing of its own until they are done.
    return lambda values: tuple((values[t].get("info.state"), values[t].get("info.progress")) for t in tasks)


def _stuck(values: dict, tasks: list, names: list[str] | None) -> str:
    """Which tasks are unfinished, and how far each got: "lab-02 running at 40%, lab-03 queued"."""
    out = []
    for i, task in enumerate(tasks):
        v = values.get(task, {})
        state = v.get("info.state") or "not started"
        if state in ("success", "error"):
            continue
        label = names[i] if names else f"task {getattr(task, '_moId', i)}"
        at = f" at {v['info.progress']}%" if state == "running" and v.get("info.progress") is not None else ""
        out.append(f"{label} {state}{at}")
    return ", ".join(out)


class TaskFailed(VSphereError):
    """A task ended in error; fault is vCenter's (a NoPermission names the privilege and object)."""

    def __init__(self, message: str, fault):
        super().__init__(message)
        self.fault = fault


def wait_tasks(session: Session, tasks: list, *, stall: float = TASK_STALL, timeout: float | None = None,
               what: str = "vSphere task", names: list[str] | None = None, tolerate: tuple = ()) -> list:
    """Wait for every task; raise the first failure as TaskFailed. Returns the results.

    tolerate: fault classes that are no failure here; such a task's result is the fault itself.

    No limit on the total time: a batch is given up only when none of its
    tasks changed state or info.progress for `stall` seconds (or, for
    cleanups that must not hang, after `timeout` in all). names, one per
    task, say in that message which ones were stuck.
    """
    if not tasks:
        return []
    ends = None if timeout is None else time.monotonic() + timeout
    clock = Stall(stall)

    def finished(values):
        return all(v.get("info.state") in ("success", "error") for v in values.values())

    with Watch(session, tasks, TASK_PROPS, vim.Task) as watch:
        try:
            until_stalled(watch, finished, _task_progress(tasks), clock, what, ends)
        except TimeoutError:
            stuck = _stuck(watch.values, tasks, names)
            if not clock.stalled():
                raise VSphereError(f"timed out after {timeout:.0f}s waiting for {what} ({stuck})") from None
            raise VSphereError(
                f"{what} made no progress for {stall:g}s ({stuck}); look at the task in vCenter's Recent Tasks"
                " (storage or host trouble), or raise wait.task_stall in the cluster file if it is only slow"
            ) from None
        results = []
        for task in tasks:
            values = watch.values[task]
            if values.get("info.state") == "error":
                err = values.get("info.error")
                fault = getattr(err, "fault", err)
                if tolerate and isinstance(fault, tolerate):
                    results.append(fault)
                    continue
                if isinstance(fault, vim.fault.NoPermission):
                    raise permission_denied(session, fault, what)
                msg = getattr(err, "localizedMessage", None) or getattr(fault, "msg", None)
                raise TaskFailed(f"{what} failed: {msg or type(fault).__name__}", fault)
            results.append(values.get("info.result"))
        return results


def wait_task(session: Session, task, *, stall: float = TASK_STALL, timeout: float | None = None,
              what: str = "vSphere task", name: str | None = None):
    return wait_tasks(session, [task], stall=stall, timeout=timeout, what=what, names=[name] if name else None)[0]
