"""Waiting on vSphere without sleep loops: one PropertyCollector filter, WaitForUpdatesEx.

The server holds each call until something changes (or WAIT_POLL_SECONDS
pass), so a wait costs a handful of requests however long it takes.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from pyVmomi import vim, vmodl

from vmcoreos.errors import VSphereError
from vmcoreos.vsphere.session import Session, poll_seconds

PC = vmodl.query.PropertyCollector
REOPENS = 3  # re-made collectors in a row, without an update in between, before a wait gives up


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
        self.pc = None
        self._open()

    def _open(self) -> None:
        # A private collector: its filter and version don't interfere with anyone else's.
        self.pc = self.session.content.propertyCollector.CreatePropertyCollector()
        while True:
            watched = [o for o, v in self.values.items() if not v.get("_gone")]
            spec = PC.FilterSpec(
                objectSet=[PC.ObjectSpec(obj=o, skip=False) for o in watched],
                propSet=[PC.PropertySpec(type=self.kind, pathSet=self.props, all=False)],
            )
            try:
                self.pc.CreateFilter(spec, partialUpdates=True)
                break
            except vmodl.fault.ManagedObjectNotFound as exc:
                # Gone while the old filter could not tell us (a re-made filter refuses it): as a "leave" would.
                if exc.obj not in watched:
                    raise
                self.values[exc.obj] = {"_gone": True}
        self.version = ""

    def _reopen(self) -> None:
        self.close()
        # The new filter's first update holds every value as it is now; what the old one
        # reported may have been removed since.
        self.values = {o: v if v.get("_gone") else {} for o, v in self.values.items()}
        self._open()

    def close(self) -> None:
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
