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
from vmcoreos.vsphere.session import Session, poll_seconds

PC = vmodl.query.PropertyCollector

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
    """Current values of props on objs, kept up to date by WaitForUpdatesEx."""

    def __init__(self, session: Session, objs: Iterable, props: list[str], kind: type):
        self.session = session
        self.values: dict[Any, dict[str, Any]] = {o: {} for o in objs}
        spec = PC.FilterSpec(
            objectSet=[PC.ObjectSpec(obj=o, skip=False) for o in self.values],
            propSet=[PC.PropertySpec(type=kind, pathSet=props, all=False)],
        )
        self.pc = _collector(session)
        try:
            self.filter = self.pc.CreateFilter(spec, partialUpdates=True)
        except vmodl.MethodFault:
            # The thread's collector is gone (a new login, say): a new one, once.
            self.pc = _collector(session, fresh=True)
            self.filter = self.pc.CreateFilter(spec, partialUpdates=True)
        self.version = ""

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
        while True:
            if done(self.values):
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(what)
            wait = max(1, min(poll_seconds(), int(remaining + 0.999)))
            update = self.pc.WaitForUpdatesEx(self.version, PC.WaitOptions(maxWaitSeconds=wait))
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
                    props = self.values.setdefault(obj.obj, {})
                    for change in obj.changeSet or []:
                        if change.op in ("remove", "indirectRemove"):
                            props.pop(change.name, None)
                        else:
                            props[change.name] = change.val


def wait_tasks(session: Session, tasks: list, *, timeout: float = 3600, what: str = "vSphere task") -> list:
    """Wait for every task; raise the first failure as a VSphereError. Returns the results."""
    if not tasks:
        return []
    deadline = time.monotonic() + timeout

    def finished(values):
        return all(v.get("info.state") in ("success", "error") for v in values.values())

    with Watch(session, tasks, ["info.state", "info.error", "info.result"], vim.Task) as watch:
        try:
            watch.until(finished, deadline, what)
        except TimeoutError:
            raise VSphereError(f"timed out after {timeout:.0f}s waiting for {what}") from None
        results = []
        for task in tasks:
            values = watch.values[task]
            if values.get("info.state") == "error":
                err = values.get("info.error")
                msg = getattr(err, "localizedMessage", None) or getattr(getattr(err, "fault", None), "msg", None)
                raise VSphereError(f"{what} failed: {msg or type(getattr(err, 'fault', err)).__name__}")
            results.append(values.get("info.result"))
        return results


def wait_task(session: Session, task, *, timeout: float = 3600, what: str = "vSphere task"):
    return wait_tasks(session, [task], timeout=timeout, what=what)[0]
