"""Finding the clone a lost connection hid: among the template's recent tasks, by the destination it names.

A fake session answers the property reads and the event query the way
vCenter does; the strict bed's run of the same path is tests/e2e/test_slow_clones.py.
"""

from __future__ import annotations

from types import SimpleNamespace

from pyVmomi import vim

from vmcoreos.vsphere import tasks

SOURCE = vim.VirtualMachine("vm-template")
FOLDER = vim.Folder("group-v3")


def _info(state="running", chain=0, result=None, description=tasks.CLONE):
    return SimpleNamespace(descriptionId=description, state=state, eventChainId=chain, result=result)


def _event(chain, name, folder=FOLDER):
    event = vim.event.VmBeingClonedEvent(chainId=chain, destName=name)
    event.destFolder = vim.event.FolderEventArgument(folder=folder, name="vm")
    return event


class Session:
    def __init__(self, infos: dict, events=(), vms=None):
        self.infos = {vim.Task(k): v for k, v in infos.items()}
        self.vms = vms or {}
        self.queries = []
        events = list(events)

        def query(spec):
            self.queries.append(spec)
            return events  # every clone event of the template: the server may ignore eventChainId

        self.content = SimpleNamespace(eventManager=SimpleNamespace(QueryEvents=query))

    def retrieve(self, objs, props, kind):
        objs = list(objs)
        if kind is vim.VirtualMachine and props == ["recentTask"]:
            return {SOURCE: {"recentTask": list(self.infos)}}
        if kind is vim.Task:
            return {t: {"info": self.infos[t]} for t in objs if t in self.infos}
        return {o: self.vms[o._moId] for o in objs if o._moId in self.vms}


def test_the_running_clone_is_told_apart_by_the_name_its_event_chain_names():
    session = Session({"task-1": _info(chain=11), "task-2": _info(chain=12)},
                      events=[_event(11, "lab-01"), _event(12, "lab-02")])
    assert tasks.find_clone(session, SOURCE, "lab-02", FOLDER) == vim.Task("task-2")
    assert all(q.eventChainId in (11, 12) and q.eventTypeId == ["VmBeingClonedEvent"] for q in session.queries)


def test_the_same_name_in_another_folder_is_not_ours():
    session = Session({"task-1": _info(chain=11)}, events=[_event(11, "lab-01", vim.Folder("group-other"))])
    assert tasks.find_clone(session, SOURCE, "lab-01", FOLDER) is None


def test_tasks_already_held_failed_clones_and_other_operations_do_not_count():
    session = Session(
        {"task-1": _info(chain=11), "task-2": _info(state="error", chain=12),
         "task-3": _info(chain=13, description="VirtualMachine.reconfigure")},
        events=[_event(11, "lab-01"), _event(12, "lab-01"), _event(13, "lab-01")],
    )
    assert tasks.find_clone(session, SOURCE, "lab-01", FOLDER, known=[vim.Task("task-1")]) is None


def test_a_finished_clone_is_judged_by_the_vm_it_made():
    made = vim.VirtualMachine("vm-9")
    session = Session({"task-1": _info(state="success", result=made)},
                      vms={"vm-9": {"name": "lab-01", "parent": FOLDER}})
    assert tasks.find_clone(session, SOURCE, "lab-01", FOLDER) == vim.Task("task-1")
    assert session.queries == []


def test_a_clone_without_its_event_yet_is_awaited_and_judged_when_it_ends(mocker):
    made = vim.VirtualMachine("vm-9")
    session = Session({"task-1": _info(state="queued", chain=11)}, vms={"vm-9": {"name": "lab-01", "parent": FOLDER}})
    ended = mocker.patch.object(tasks, "outcomes", return_value={vim.Task("task-1"): ("success", made)})
    assert tasks.find_clone(session, SOURCE, "lab-01", FOLDER) == vim.Task("task-1")
    assert ended.call_args.args[1] == [vim.Task("task-1")]
