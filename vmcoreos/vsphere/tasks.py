"""vSphere tasks we lost sight of or must stop: the clone a dropped connection hid, cancelling, outcomes.

A clone's TaskInfo names its source, never the new VM: `entity` and
`entityName` are the template's, the arguments are not kept, and the VM
exists only once the disks are copied (minutes on real storage). What does
carry the new name is the VmBeingClonedEvent the task posts when it starts:
its `destName` and `destFolder`, in the task's event chain
(`TaskInfo.eventChainId` is that event's `chainId`). So a lost clone is found
among the template's recentTask by descriptionId, then told apart from other
clones of the same template by the destination its event names, or, once it
has ended, by the VM it made.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Iterable

from pyVmomi import vim

from vmcoreos.vsphere.session import Session
from vmcoreos.vsphere.waits import Watch

CLONE = "VirtualMachine.clone"  # TaskInfo.descriptionId of CloneVM_Task, on vCenter and the strict bed
ENDED = ("success", "error")


def _moid(ref) -> str:
    return getattr(ref, "_moId", "") or ""


def find_clone(session: Session, source, name: str, folder, *, known: Iterable = ()) -> Any | None:
    """The clone task of source that makes `name` in folder and that we hold no handle to; None if there is none.

    known: the tasks this run already holds (a batch's other clones). A failed
    clone made nothing, so it does not count. A clone whose event is not
    there yet (queued behind another operation) is awaited until it ends and
    judged by the VM it made.
    """
    held = {_moid(t) for t in known}
    recent = session.retrieve([source], ["recentTask"], vim.VirtualMachine).get(source, {}).get("recentTask") or []
    infos = session.retrieve([t for t in recent if _moid(t) not in held], ["info"], vim.Task)
    clones = {t: p["info"] for t, p in infos.items() if getattr(p.get("info"), "descriptionId", None) == CLONE}
    undecided = []
    for task, info in clones.items():
        if info.state == "error":
            continue
        target = _target(session, source, info)
        if target is None:
            undecided.append(task)
        elif target == (name, _moid(folder)):
            return task
    for task, (state, result) in outcomes(session, undecided, timeout=None).items():
        if state == "success" and result is not None and _made(session, result) == (name, _moid(folder)):
            return task
    return None


def _target(session: Session, source, info) -> tuple[str, str] | None:
    """(name, folder moref) a clone makes, if vCenter says yet: the VM it made, or its VmBeingClonedEvent."""
    if info.state == "success" and info.result is not None:
        return _made(session, info.result)
    chain = info.eventChainId
    if not chain:
        return None
    spec = vim.event.EventFilterSpec(
        eventChainId=chain, eventTypeId=["VmBeingClonedEvent"],
        entity=vim.event.EventFilterSpec.ByEntity(entity=source, recursion="self"),
    )
    # The chain is checked here too: not every server filters by it.
    for event in session.content.eventManager.QueryEvents(spec) or []:
        if isinstance(event, vim.event.VmBeingClonedEvent) and event.chainId == chain:
            return event.destName, _moid(getattr(event.destFolder, "folder", None))
    return None


def _made(session: Session, vm) -> tuple[str, str] | None:
    props = session.retrieve([vm], ["name", "parent"], vim.VirtualMachine).get(vm)
    return (props.get("name", ""), _moid(props.get("parent"))) if props else None


def outcomes(session: Session, tasks: list, *, timeout: float | None) -> dict[Any, tuple[str, Any]]:
    """(state, result) of each task once it has ended, or as it stands when timeout seconds have passed."""
    if not tasks:
        return {}
    deadline = time.monotonic() + (3600 if timeout is None else timeout)
    with Watch(session, tasks, ["info.state", "info.result"], vim.Task) as watch:
        with contextlib.suppress(TimeoutError):
            watch.until(lambda values: all(v.get("info.state") in ENDED for v in values.values()), deadline, "tasks")
        return {t: (watch.values[t].get("info.state"), watch.values[t].get("info.result")) for t in tasks}


class InFlight:
    """The tasks this process is waiting on, so an interrupt can cancel them wherever a thread waits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[str, Any] = {}

    @contextlib.contextmanager
    def tracking(self, tasks: list):
        with self._lock:
            self._tasks.update({_moid(t): t for t in tasks})
        try:
            yield
        finally:
            with self._lock:
                for t in tasks:
                    self._tasks.pop(_moid(t), None)

    def cancel_all(self) -> None:
        """CancelTask on every task still awaited; vCenter refuses it for tasks that cannot be stopped, fine."""
        with self._lock:
            pending = list(self._tasks.values())
        for task in pending:
            with contextlib.suppress(Exception):
                task.CancelTask()


in_flight = InFlight()
