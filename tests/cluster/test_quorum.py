"""Scale-down and rebuild refuse any step that would leave etcd below quorum (faults mocked at etcd's edge)."""

import pytest

from vmcoreos import cluster as cl
from vmcoreos import etcd
from vmcoreos.errors import EtcdError
from vmcoreos.vsphere.vms import MARK_CLUSTER, VmInfo


def _member(i, ok=True):
    return etcd.Member(f"{i:x}", f"lab-0{i}", (f"http://10.0.0.{i}:2380",), (f"http://10.0.0.{i}:2379",))


def _cluster(mocker, healthy: dict[int, bool]):
    c = object.__new__(cl.Cluster)
    c.settings = mocker.Mock()
    c.settings.name = "lab"
    c.session = mocker.Mock()
    c.reporter = cl.QuietReporter()
    view = etcd.ClusterView([_member(i) for i in healthy], leader="1")
    mocker.patch.object(cl.Cluster, "live_view", return_value=("http://10.0.0.1:2379", view))
    mocker.patch.object(cl.Cluster, "health", return_value={f"{i:x}": ok for i, ok in healthy.items()})
    return c


def _vm(i):
    return VmInfo(object(), f"lab-0{i}", False, "poweredOn", "guestToolsRunning", f"10.0.0.{i}", {MARK_CLUSTER: "lab"})


def test_removing_a_member_that_would_break_quorum_is_refused(mocker):
    # 3 members, one already down: removing a healthy one leaves 1 healthy of 2, below quorum (2).
    c = _cluster(mocker, {1: True, 2: True, 3: False})
    remove = mocker.patch.object(etcd, "member_remove")
    destroy = mocker.patch("vmcoreos.vsphere.vms.destroy")
    with pytest.raises(EtcdError, match="below quorum"):
        c.remove_node(_vm(2), {f"lab-0{i}": _vm(i) for i in (1, 2, 3)})
    remove.assert_not_called()
    destroy.assert_not_called()


def test_removing_the_unhealthy_member_is_allowed(mocker):
    c = _cluster(mocker, {1: True, 2: True, 3: False})
    remove = mocker.patch.object(etcd, "member_remove")
    destroy = mocker.patch("vmcoreos.vsphere.vms.destroy")
    c.remove_node(_vm(3), {f"lab-0{i}": _vm(i) for i in (1, 2, 3)})
    remove.assert_called_once_with("http://10.0.0.1:2379", "3")
    destroy.assert_called_once()


def test_leader_is_moved_before_it_is_removed(mocker):
    c = _cluster(mocker, {1: True, 2: True, 3: True})
    mocker.patch.object(etcd, "member_remove")
    mocker.patch("vmcoreos.vsphere.vms.destroy")
    move = mocker.patch.object(etcd, "move_leader")
    c.remove_node(_vm(1), {f"lab-0{i}": _vm(i) for i in (1, 2, 3)})
    move.assert_called_once_with("http://10.0.0.1:2379", "2")
