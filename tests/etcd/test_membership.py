"""The membership rules as tables: joined, quorum on removal, the next leader."""

import pytest

from vmcoreos import etcd
from vmcoreos.errors import EtcdError


def _m(i, name=None, client=True):
    urls = (f"http://10.0.0.{i}:2379",) if client else ()
    return etcd.Member(f"{i:x}", f"lab-0{i}" if name is None else name, (f"http://10.0.0.{i}:2380",), urls)


@pytest.mark.parametrize("view,healthy,stage,member_id,leader", [
    (None, True, None, None, False),  # etcd did not answer
    (etcd.ClusterView([_m(1)]), True, "etcd reachable", None, False),  # not listed
    (etcd.ClusterView([_m(1), _m(2, name="")]), True, "etcd reachable", None, False),  # added, not started
    (etcd.ClusterView([_m(1), _m(2, client=False)]), True, "etcd reachable", None, False),  # no client URLs
    (etcd.ClusterView([_m(1), _m(2)]), False, "member listed", "2", False),
    (etcd.ClusterView([_m(1), _m(2)], leader="1"), True, "healthy", "2", False),
    (etcd.ClusterView([_m(1), _m(2)], leader="2"), True, "healthy", "2", True),
])
def test_a_node_has_joined_when_listed_with_client_urls_and_healthy(view, healthy, stage, member_id, leader):
    state = etcd.join_state(view, "lab-02", healthy)
    assert (state.stage, state.member_id, state.leader, state.joined) == (stage, member_id, leader, stage == "healthy")


def test_probe_join_asks_health_only_of_a_listed_member(mocker):
    client = mocker.Mock(spec=etcd.Client)
    client.member_list.return_value, client.healthy.return_value = etcd.ClusterView([_m(1)]), True
    assert etcd.probe_join(client, "http://10.0.0.2:2379", "lab-02").stage == "etcd reachable"
    client.healthy.assert_not_called()
    client.member_list.side_effect = ConnectionError("refused")
    assert etcd.probe_join(client, "http://10.0.0.2:2379", "lab-02").stage is None


@pytest.mark.parametrize("members,healthy,removed,refused", [
    (3, {1, 2, 3}, 3, False),
    (3, {1, 2}, 3, False),  # removing the sick one leaves 2 of 2
    (3, {1, 3}, 1, True),  # 1 healthy of 2 left is below quorum(2) == 2
    (5, {1, 2, 3}, 4, False),
    (5, {1, 2}, 5, True),
    (2, {1}, 1, True),  # 0 healthy of 1 left
    (1, {1}, 1, False),  # the last member: nothing left to keep quorum
])
def test_a_removal_that_would_break_quorum_is_refused(members, healthy, removed, refused):
    view = etcd.ClusterView([_m(i) for i in range(1, members + 1)])
    health = {m.id: int(m.id, 16) in healthy for m in view.members}
    member = view.members[removed - 1]
    if refused:
        with pytest.raises(EtcdError, match=f"removing lab-0{removed} would leave .* below quorum"):
            etcd.check_removal(view, health, member, f"lab-0{removed}")
    else:
        etcd.check_removal(view, health, member, f"lab-0{removed}")


@pytest.mark.parametrize("size,q", [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_quorum(size, q):
    assert etcd.quorum(size) == q


def test_leadership_moves_to_the_first_healthy_other_member():
    view = etcd.ClusterView([_m(1), _m(2), _m(3)], leader="1")
    assert etcd.needs_new_leader(view, view.members[0]) and not etcd.needs_new_leader(view, view.members[1])
    assert etcd.next_leader(view, view.members[0], {"1": True, "2": False, "3": True}) == view.members[2]
    assert etcd.next_leader(view, view.members[0], {"1": True}) is None
    assert etcd.next_leader(view, _m(1, client=False), {"2": True}) is None  # nobody to ask to step down
    assert not etcd.needs_new_leader(etcd.ClusterView([_m(1)], leader="1"), _m(1))


def test_first_view_skips_silent_endpoints_and_refuses_a_hostile_list(mocker):
    views = {"http://a:2379": ConnectionError("refused"), "http://b:2379": etcd.ClusterView([_m(1)])}

    def member_list(endpoint):
        if isinstance(views[endpoint], Exception):
            raise views[endpoint]
        return views[endpoint]

    client = mocker.Mock(spec=etcd.Client)
    client.member_list.side_effect = member_list
    assert etcd.first_view(client, ["http://a:2379", "http://b:2379"], "lab")[0] == "http://b:2379"
    views["http://b:2379"] = etcd.ClusterView([_m(1, name="evil")])
    with pytest.raises(EtcdError, match="'evil', which is not a lab-NN node name"):
        etcd.first_view(client, ["http://a:2379", "http://b:2379"], "lab")
    assert etcd.first_view(client, ["http://a:2379"], "lab") is None
