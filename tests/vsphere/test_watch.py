"""Watch re-makes its collector after a re-login, including the case the simulator cannot show:
an object deleted while no filter watched it, which vCenter refuses in the new filter."""

import time
from types import SimpleNamespace

import pytest
from pyVmomi import vim, vmodl

from vmcoreos.vsphere.waits import Watch


def _update(version, flt, obj, **props):
    changes = [SimpleNamespace(op="assign", name=k, val=v) for k, v in props.items()]
    return SimpleNamespace(version=version, filterSet=[SimpleNamespace(filter=flt, objectSet=[
        SimpleNamespace(obj=obj, kind="enter", changeSet=changes, missingSet=[])])])


class Filter:
    def __init__(self):
        self.destroyed = False

    def DestroyPropertyFilter(self):
        self.destroyed = True


class Collectors:
    """The session's PropertyCollector: hands out private collectors that play a script."""

    def __init__(self, session, gone=()):
        self.session, self.gone, self.made, self.filters = session, set(gone), [], []

    def CreatePropertyCollector(self):
        pc = Collector(self, len(self.made))
        self.made.append(pc)
        return pc


class Collector:
    def __init__(self, owner, index):
        self.owner, self.index, self.destroyed = owner, index, False
        self.made: list[Filter] = []

    def CreateFilter(self, spec, partialUpdates):
        objs = [o.obj for o in spec.objectSet]
        self.owner.filters.append(objs)
        for obj in objs:
            if self.index and obj in self.owner.gone:
                raise vmodl.fault.ManagedObjectNotFound(obj=obj)
        self.made.append(Filter())
        return self.made[-1]

    def WaitForUpdatesEx(self, version, options):
        if self.index == 0 and version:
            self.owner.session.generation += 1  # the guard logged in again; this collector died with the old session
            raise vmodl.fault.ManagedObjectNotFound(obj=vim.PropertyCollector(f"session[old]pc-{self.index}"))
        a = self.owner.filters[-1][0]
        return _update(f"{self.index}-{version or 0}", self.made[-1], a, name="A", n=self.index)

    def Destroy(self):
        self.destroyed = True


@pytest.fixture
def vms():
    return vim.VirtualMachine("vm-1"), vim.VirtualMachine("vm-2")


def test_a_collector_lost_with_the_session_is_made_again_and_the_wait_goes_on(vms):
    a, b = vms
    session = SimpleNamespace(generation=0)
    session.content = SimpleNamespace(propertyCollector=Collectors(session, gone={b}))
    with Watch(session, [a, b], ["name", "n"], vim.VirtualMachine) as watch:
        watch.until(lambda v: "name" in v[a], time.monotonic() + 10, "first")
        watch.until(lambda v: v[a].get("n") == 1, time.monotonic() + 10, "after the re-login")
    made = session.content.propertyCollector.made
    # A new collector for the new session; the wait's filter on it is removed when the wait ends (the
    # collector stays for the thread's next wait).
    assert len(made) == 2 and [f.destroyed for f in made[1].made] == [True]
    # b went while no filter watched it: the new filter refused it, and the wait reports it gone.
    assert session.content.propertyCollector.filters == [[a, b], [a, b], [a]]
    assert watch.values[b] == {"_gone": True} and watch.values[a]["name"] == "A"


def test_a_collector_that_keeps_vanishing_without_a_re_login_is_an_error(vms):
    a, _ = vms

    class Vanishing(Collector):
        def WaitForUpdatesEx(self, version, options):
            raise vmodl.fault.ManagedObjectNotFound(obj=vim.PropertyCollector(f"session[old]pc-{self.index}"))

    session = SimpleNamespace(generation=0)
    collectors = Collectors(session)
    collectors.CreatePropertyCollector = lambda: collectors.made.append(Vanishing(collectors, 0)) or collectors.made[-1]
    session.content = SimpleNamespace(propertyCollector=collectors)
    with Watch(session, [a], ["name"], vim.VirtualMachine) as watch:
        with pytest.raises(vmodl.fault.ManagedObjectNotFound):
            watch.until(lambda v: "name" in v[a], time.monotonic() + 10, "never")
    assert len(collectors.made) == 2  # re-made once, then given up: no loop against a broken vCenter
