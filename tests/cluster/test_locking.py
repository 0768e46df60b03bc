"""The lock policy (cluster/locking.py) for a cluster no etcd answers for: the vSphere lock folder, taken
after the privilege check, held while the run works, given back however it ends."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pyVmomi import vim

from vmcoreos.cluster import locking
from vmcoreos.cluster.members import Members
from vmcoreos.errors import ConfigError, ExitCode, LockedError
from vmcoreos.vsphere import folderlock, privileges
from vmcoreos.vsphere.folderlock import FolderLock, Holder


class Events:
    def __init__(self):
        self.lines = []

    def event(self, line):
        self.lines.append(line)


def _run(mocker, nodes_now=()):
    settings = SimpleNamespace(name="lab", node=SimpleNamespace(linked_clone=False), etcd=SimpleNamespace(ca_file=None, scheme="http"))
    run = SimpleNamespace(settings=settings, name="lab", session=mocker.Mock(), reporter=Events(),
                          placement=SimpleNamespace(folder=mocker.Mock(), folder_path="team/lab"),
                          members=Members(settings))
    run.inventory = lambda: SimpleNamespace(nodes={n: object() for n in nodes_now})
    mocker.patch.object(Members, "live_view", return_value=None)  # no etcd answers: a new cluster
    return run


@pytest.fixture
def lock(mocker):
    calls = []
    mocker.patch.object(privileges, "require", side_effect=lambda *a, **kw: calls.append(("require", kw["lock"])))
    mocker.patch.object(FolderLock, "acquire", side_effect=lambda: calls.append("acquire"))
    mocker.patch.object(FolderLock, "release", side_effect=lambda: calls.append("release"))
    return calls


def test_a_new_cluster_is_locked_in_vsphere_after_the_privilege_check_and_released(mocker, lock):
    run = _run(mocker)
    with locking.cluster_lock(run, {}):
        lock.append("work")
    assert lock == [("require", True), "acquire", "work", "release"]


@pytest.mark.parametrize("raised", [RuntimeError("boom"), KeyboardInterrupt()])  # SIGTERM arrives as the latter
def test_the_vsphere_lock_is_released_when_the_run_fails_or_is_interrupted(mocker, lock, raised):
    run = _run(mocker)
    with pytest.raises(type(raised)):
        with locking.cluster_lock(run, {}):
            raise raised
    assert lock[-1] == "release"


def test_a_cluster_another_run_built_while_this_one_waited_stops_it(mocker, lock):
    run = _run(mocker, nodes_now=["lab-01"])  # planned on none; lab-01 exists once the lock is ours
    with pytest.raises(LockedError) as err:
        with locking.cluster_lock(run, {}):
            lock.append("work")
    assert err.value.exit_code == ExitCode.LOCKED and "changed while this run waited" in err.value.message
    assert "work" not in lock and lock[-1] == "release"


def test_breaking_an_expired_lock_is_one_notice_naming_its_old_owner(mocker, lock):
    old = Holder("cron-2", 77, "ops", "ops@vsphere.local", 1_000_000_000, 1_000_000_300)
    mocker.patch.object(FolderLock, "acquire", return_value=old)
    run = _run(mocker)
    with locking.cluster_lock(run, {}):
        pass
    assert run.reporter.lines == [
        "broke cluster 'lab''s expired vSphere lock, held by 'ops' on 'cron-2' (pid 77, vCenter user"
        " 'ops@vsphere.local') since 2001-09-09T01:46:40Z until 2001-09-09T01:51:40Z"
    ]


def test_a_lock_folder_that_stays_is_said(mocker, lock):
    mocker.patch.object(FolderLock, "release", return_value="could not remove the lock folder 'vmcoreos-lock-lab'")
    run = _run(mocker)
    with locking.cluster_lock(run, {}):
        pass
    assert run.reporter.lines == ["could not remove the lock folder 'vmcoreos-lock-lab'"]


def test_the_lock_privileges_are_asked_only_when_the_lock_is_taken():
    placement = SimpleNamespace(folder=object(), resource_pool=object(), datastore=object(), network=object(),
                                folder_path="", cluster_name="C", network_name="N")
    plain = {n.privilege for _, _, n in privileges.needed(placement, linked_clone=False)}
    locked = {n.privilege for _, _, n in privileges.needed(placement, linked_clone=False, lock=True)}
    assert set(locked) - set(plain) == {"Folder.Create", "Folder.Delete", "Global.SetCustomField"}


@pytest.mark.parametrize("call, privilege", [
    ("CreateFolder", "Folder.Create"), ("SetField", "Global.SetCustomField"),
    ("AddCustomFieldDef", "Global.ManageCustomFields"),
])
def test_a_lock_call_vcenter_refuses_names_the_privilege(mocker, call, privilege):
    session = mocker.Mock()
    session.conn.username = "deployer"
    session.content.customFieldsManager.field = [] if call == "AddCustomFieldDef" else [
        SimpleNamespace(name=folderlock.FIELD, managedObjectType="Folder", key=7)]
    session.si.CurrentTime.return_value.timestamp.return_value = 1_000_000_000.0
    parent = mocker.Mock()
    denied = vim.fault.NoPermission(privilegeId=privilege)
    target = parent if call == "CreateFolder" else session.content.customFieldsManager
    getattr(target, call).side_effect = denied
    mocker.patch.object(FolderLock, "_destroy")
    lock = FolderLock(session, parent, "lab", where="folder team/lab")
    with pytest.raises(ConfigError) as err:
        lock.acquire()
    assert err.value.exit_code == ExitCode.USAGE
    assert f"'deployer' lacks the privilege {privilege}" in err.value.message and "\n" not in err.value.message
    if call == "SetField":
        FolderLock._destroy.assert_called_once()  # no lock folder without an owner is left behind


@pytest.mark.parametrize("recorded, shown", [
    ("ops1:4242", "host 'ops1', PID 4242"),
    ("no pid\nforged line", "recorded as 'no pid\\nforged line'"),
    (None, "a holder that recorded nothing"),
])
def test_a_held_etcd_lock_names_its_holder_and_until_when(mocker, recorded, shown):
    # It read "another vmcoreos run ('ops1:4242') holds cluster 'lab''s etcd lock".
    run = _run(mocker)
    live = SimpleNamespace(members=[])
    mocker.patch.object(Members, "live_view", return_value=("http://127.0.0.1:2379", live))
    mocker.patch("vmcoreos.etcd.EtcdLock.acquire", return_value=False)
    mocker.patch("vmcoreos.etcd.EtcdLock.holder_of", return_value=recorded)
    with pytest.raises(LockedError) as caught:
        with locking.cluster_lock(run, {}):
            pass
    assert caught.value.message == (
        f"another vmcoreos run holds the etcd lock of cluster 'lab': {shown}, until that run ends or 60 s after it"
        " stops renewing the lock's lease; let it finish and try again")
    assert caught.value.exit_code == ExitCode.LOCKED
