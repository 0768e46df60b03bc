"""The placement planner: which host and datastore each member gets, and when placement is degraded."""

from __future__ import annotations

import pytest

from vmcoreos.cluster.placement import Spot, choose, sharing

THREE = {"esx1": ["ds1"], "esx2": ["ds1"], "esx3": ["ds1"]}


@pytest.mark.parametrize(
    "new, mounts, datastores, members, prefer, want",
    [
        # a new cluster: one host each, round robin by name
        (["n1", "n2", "n3"], THREE, ["ds1"], {}, {}, {"n1": "esx1", "n2": "esx2", "n3": "esx3"}),
        # a fourth member goes to a host with the fewest (all have one: the first by name)
        (["n4"], THREE, ["ds1"], {"n1": Spot("esx1", "ds1"), "n2": Spot("esx2", "ds1"), "n3": Spot("esx3", "ds1")},
         {}, {"n4": "esx1"}),
        # the free host is taken, whatever its name
        (["n3"], THREE, ["ds1"], {"n1": Spot("esx1", "ds1"), "n2": Spot("esx3", "ds1")}, {}, {"n3": "esx2"}),
        # one host in maintenance (not usable): two members share, evenly
        (["n1", "n2", "n3"], {"esx1": ["ds1"], "esx3": ["ds1"]}, ["ds1"], {}, {},
         {"n1": "esx1", "n2": "esx3", "n3": "esx1"}),
        # members on a host that is no longer usable count for nothing there
        (["n3"], {"esx1": ["ds1"], "esx2": ["ds1"]}, ["ds1"],
         {"n1": Spot("esx3", "ds1"), "n2": Spot("esx1", "ds1")}, {}, {"n3": "esx2"}),
        # a rebuild: the replacement goes back where the replaced member was, on a tie
        (["n2"], {"a": ["ds1"], "b": ["ds1"], "c": ["ds1"], "d": ["ds1"]}, ["ds1"],
         {"n1": Spot("a", "ds1"), "n3": Spot("c", "ds1")}, {"n2": Spot("d", "ds1")}, {"n2": "d"}),
        # ... but never onto a host another member already holds while one is free
        (["n2"], THREE, ["ds1"], {"n1": Spot("esx1", "ds1"), "n3": Spot("esx3", "ds1")}, {"n2": Spot("esx1", "ds1")},
         {"n2": "esx2"}),
        # the node being replaced is not counted where it was
        (["n2"], THREE, ["ds1"], {"n1": Spot("esx1", "ds1"), "n2": Spot("esx2", "ds1"), "n3": Spot("esx3", "ds1")},
         {}, {"n2": "esx2"}),
    ],
)
def test_hosts(new, mounts, datastores, members, prefer, want):
    got = choose(new, mounts, datastores, members, prefer)
    assert {n: s.host for n, s in got.spots.items()} == want


def test_datastores_spread_with_hosts():
    got = choose(["n1", "n2", "n3"], {"h1": ["a", "b"], "h2": ["a", "b"], "h3": ["a", "b"]}, ["a", "b"], {})
    assert [got.spots[n] for n in ("n1", "n2", "n3")] == [Spot("h1", "a"), Spot("h2", "b"), Spot("h3", "a")]
    assert got.warnings and "2 datastore(s)" in got.warnings[0]


def test_local_datastores_one_per_host():
    mounts = {"h1": ["l1"], "h2": ["l2"], "h3": ["l3"]}
    got = choose(["n1", "n2", "n3"], mounts, ["l1", "l2", "l3"], {})
    assert {n: (s.host, s.datastore) for n, s in got.spots.items()} == {
        "n1": ("h1", "l1"), "n2": ("h2", "l2"), "n3": ("h3", "l3")}
    assert got.warnings == () and got.apart


def test_more_members_than_hosts_warns_once_and_is_not_apart():
    got = choose(["n1", "n2", "n3"], {"h1": ["d"], "h2": ["d"]}, ["d"], {})
    assert len(got.warnings) == 1 and "3 etcd members on 2 usable host(s)" in got.warnings[0]
    assert not got.apart


def test_one_datastore_named_is_no_warning():
    assert choose(["n1", "n2"], {"h1": ["d"], "h2": ["d"]}, ["d"], {}).warnings == ()


@pytest.mark.parametrize(
    "members, hosts, stores, degraded, shared",
    [
        ({"n1": Spot("a", "d"), "n2": Spot("b", "d"), "n3": Spot("c", "d")}, 3, 1, False, {}),
        ({"n1": Spot("a", "d"), "n2": Spot("a", "d"), "n3": Spot("c", "d")}, 3, 1, True, {"n1": ("n2",), "n2": ("n1",)}),
        # only two usable hosts: sharing cannot be helped, so it is flagged but not degraded
        ({"n1": Spot("a", "d"), "n2": Spot("a", "d"), "n3": Spot("c", "d")}, 2, 1, False, {"n1": ("n2",), "n2": ("n1",)}),
        # two datastores named, all on one
        ({"n1": Spot("a", "d"), "n2": Spot("b", "d")}, 3, 2, True, {}),
    ],
)
def test_sharing(members, hosts, stores, degraded, shared):
    got = sharing(members, hosts, stores)
    assert got.degraded is degraded
    assert got.shared_host == shared
