"""The vSphere lock folder (vsphere/folderlock.py) on the simulator: taken once, refused with its holder,
renewed, released only when ours, broken when expired or left by a dead process of this host."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from pyVmomi import vim

from tests.harness.services import PASSWORD, USER
from vmcoreos.connection import connection_from
from vmcoreos.errors import LockedError
from vmcoreos.vsphere import folderlock
from vmcoreos.vsphere.folderlock import FolderLock, Holder
from vmcoreos.vsphere.session import connect

pytestmark = pytest.mark.e2e  # every test starts build/vcsim


@pytest.fixture
def sim(shared_vcsim):
    return shared_vcsim


@pytest.fixture
def session(sim):
    conn = connection_from(url=sim.url, ca_file=sim.cert,
                           environ={"VMCOREOS_USERNAME": USER, "VMCOREOS_PASSWORD": PASSWORD})
    s = connect(conn)
    yield s
    s.close()


def _vm_folder(session):
    dc = next(e for e in session.content.rootFolder.childEntity if isinstance(e, vim.Datacenter))
    return dc.vmFolder


def _lock(session, cluster, **kw) -> FolderLock:
    return FolderLock(session, _vm_folder(session), cluster, where="the datacenter's VM folder", **kw)


def _folders(session) -> dict[str, object]:
    return {f.name: f for f in _vm_folder(session).childEntity if isinstance(f, vim.Folder)}


def _plant(session, cluster: str, value: str | None) -> object:
    """A lock folder some other run made (value: its owner record, as that run wrote it)."""
    probe = _lock(session, cluster)
    folder = _vm_folder(session).CreateFolder(probe.name)
    if value is not None:
        key = probe._field_key()
        session.content.customFieldsManager.SetField(entity=folder, key=key, value=value)
    return folder


def _holder(now: float, **kw) -> Holder:
    fields = dict(host="ops-2.example", pid=4242, user="alice", vcenter_user="alice@vsphere.local",
                  since=now - 60, until=now + 240)
    fields.update(kw)
    return Holder(**fields)


def test_the_lock_is_taken_once_refused_with_its_holder_and_released(session):
    first = _lock(session, "race")
    assert first.acquire() is None
    assert first.name == "vmcoreos-lock-race" and "vmcoreos-lock-race" in _folders(session)
    recorded = Holder.parse(first._read(first.folder).raw)
    assert recorded.same_run(first.holder) and recorded.vcenter_user == USER
    assert recorded.until - recorded.since == pytest.approx(folderlock.TTL)

    second = _lock(session, "race", settle=0.5)
    with pytest.raises(LockedError) as err:
        second.acquire()
    message = err.value.message
    assert "\n" not in message and "is locked by another vmcoreos run" in message
    assert repr(recorded.host) in message and f"pid {recorded.pid}" in message and "until" in message
    assert "remove the folder 'vmcoreos-lock-race'" in message

    assert first.release() is None
    assert "vmcoreos-lock-race" not in _folders(session)
    assert second.acquire() is None  # free again
    assert second.release() is None


def test_the_holder_renews_its_expiry_while_it_runs(session):
    lock = _lock(session, "renew", ttl=1.5)
    lock.acquire()
    try:
        first = Holder.parse(lock._read(lock.folder).raw).until
        deadline = time.monotonic() + 5  # renewals come every ttl/3; a busy machine may delay one
        while (later := Holder.parse(lock._read(lock.folder).raw)).until == first and time.monotonic() < deadline:
            time.sleep(0.1)
        assert later.until > first and later.same_run(lock.holder)
    finally:
        lock.release()


def test_an_expired_lock_is_broken_and_its_holder_named(session):
    now = session.si.CurrentTime().timestamp()
    old = _holder(now, since=now - 400, until=now - 100)
    planted = _plant(session, "expired", old.value())
    lock = _lock(session, "expired")
    broken = lock.acquire()
    try:
        assert broken == old
        assert lock.folder != planted and Holder.parse(lock._read(lock.folder).raw).same_run(lock.holder)
    finally:
        assert lock.release() is None
    assert "vmcoreos-lock-expired" not in _folders(session)


def test_a_lock_left_by_a_dead_process_of_this_host_is_broken_at_once(session):
    import socket

    gone = subprocess.Popen(["true"])
    gone.wait()
    now = session.si.CurrentTime().timestamp()
    _plant(session, "killed", _holder(now, host=socket.gethostname(), pid=gone.pid).value())
    lock = _lock(session, "killed")
    try:
        assert lock.acquire().pid == gone.pid
    finally:
        lock.release()


def test_an_owner_read_back_from_vsphere_is_shown_escaped(session):
    now = session.si.CurrentTime().timestamp()
    hostile = _holder(now, host="evil\nvmcoreos: done \x1b[32mOK", user="x" * 500)
    folder = _plant(session, "hostile", hostile.value())
    try:
        with pytest.raises(LockedError) as err:
            _lock(session, "hostile", settle=0.5).acquire()
        message = err.value.message
        assert "\n" not in message and "\x1b" not in message
        assert "'evil\\nvmcoreos: done \\x1b[32mOK'" in message and "x" * 81 not in message
    finally:
        folder.Destroy_Task()


@pytest.mark.parametrize("value", [None, "not json\n", json.dumps({"host": 1}),
                                   Holder("h", -1, "u", "v", 0, 1).value()])  # kill(-1, 0) would ask about all
def test_a_lock_without_a_readable_owner_is_held_not_broken(session, value):
    folder = _plant(session, "noowner", value)
    try:
        started = time.monotonic()
        with pytest.raises(LockedError, match="recorded .* no expiry; if no vmcoreos run is under way, remove") as err:
            _lock(session, "noowner", settle=0.6).acquire()
        if value is None:
            assert time.monotonic() - started >= 0.5  # it waited for the creator to write its owner
        assert "\n" not in err.value.message
        assert "vmcoreos-lock-noowner" in _folders(session)
    finally:
        folder.Destroy_Task()


def test_release_leaves_a_lock_that_another_run_broke_and_took(session):
    lock = _lock(session, "taken")
    lock.acquire()
    mine = lock.folder
    # Another run found ours expired, removed it and took a lock of its own.
    from pyVim.task import WaitForTask

    WaitForTask(mine.Destroy_Task())
    now = session.si.CurrentTime().timestamp()
    theirs = _plant(session, "taken", _holder(now).value())
    try:
        assert lock.release() is None
        assert _folders(session)["vmcoreos-lock-taken"] == theirs
    finally:
        theirs.Destroy_Task()


def test_a_lock_folder_with_something_in_it_is_never_removed(session):
    lock = _lock(session, "full")
    lock.acquire()
    inner = lock.folder.CreateFolder("someones-stuff")
    try:
        left = lock.release()
        assert left and "not empty" in left and "vmcoreos-lock-full" in _folders(session)
    finally:
        from pyVim.task import WaitForTask

        WaitForTask(inner.Destroy_Task())
        WaitForTask(_folders(session)["vmcoreos-lock-full"].Destroy_Task())
