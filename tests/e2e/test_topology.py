"""vsphere/topology.py on the strict bed: usable hosts, vsphere.host, and an NSX segment's port group per switch."""

from __future__ import annotations

import pytest

from tests.e2e.direct import session_on, target
from tests.harness.services import Vcsim
from vmcoreos.errors import VSphereError
from vmcoreos.vsphere import targets

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = Vcsim(tmp_path_factory.mktemp("topology-vcsim"), strict=True)
    try:
        yield s.start()
    finally:
        s.stop()


@pytest.fixture
def api(sim):
    """A plain pyvmomi session, for what the test itself changes in the bed."""
    from pyVim.connect import Disconnect

    si = sim.connect()
    yield si
    Disconnect(si)


@pytest.fixture
def session(sim):
    s = session_on(sim)
    yield s
    s.close()


def _switch(si, name: str, portgroup: str, hosts) -> None:
    """A distributed switch with one port group, joined by hosts (after the port group exists, so they see it)."""
    from pyVim.task import WaitForTask
    from pyVmomi import vim

    dc = next(e for e in si.RetrieveContent().rootFolder.childEntity if e.name == "DC0")
    spec = vim.DistributedVirtualSwitch.CreateSpec(configSpec=vim.dvs.VmwareDistributedVirtualSwitch.ConfigSpec(name=name))
    # A folder of its own, as the bed's twin port group: the simulator refuses a name twice in one folder.
    task = dc.networkFolder.CreateFolder(f"{name}-net").CreateDVS_Task(spec)
    WaitForTask(task)
    dvs = task.info.result
    WaitForTask(dvs.AddDVPortgroup_Task([vim.dvs.DistributedVirtualPortgroup.ConfigSpec(name=portgroup, type="earlyBinding")]))
    members = [vim.dvs.HostMember.ConfigSpec(operation="add", host=h) for h in hosts]
    WaitForTask(dvs.ReconfigureDvs_Task(vim.DistributedVirtualSwitch.ConfigSpec(
        configVersion=dvs.config.configVersion, host=members)))


def test_an_nsx_segment_is_the_port_group_on_the_clusters_hosts(api, session):
    from pyVmomi import vim

    si = api
    content = si.RetrieveContent()
    dc = next(e for e in content.rootFolder.childEntity if e.name == "DC0")
    cluster = next(c for c in dc.hostFolder.childEntity if c.name == "DC0_C0")
    standalone = next(c for c in dc.hostFolder.childEntity if c.name != "DC0_C0").host
    _switch(si, "NSX-A", "seg-web", cluster.host)
    _switch(si, "NSX-B", "seg-web", standalone)
    placement = targets.locate(session, target(network="seg-web"))
    switch = placement.network.config.distributedVirtualSwitch
    assert session.retrieve([switch], ["name"], vim.ManagedEntity)[switch]["name"] == "NSX-A"
    # Present on the cluster's hosts through both switches: still ambiguous, still refused with the paths.
    with pytest.raises(VSphereError) as raised:
        targets.locate(session, target(network="DC0_DVPG0"))
    assert "resolves to 2 objects" in raised.value.message


def test_usable_hosts_leave_out_maintenance_and_say_why(api, session):
    from pyVim.task import WaitForTask

    si = api
    dc = next(e for e in si.RetrieveContent().rootFolder.childEntity if e.name == "DC0")
    hosts = sorted(next(c for c in dc.hostFolder.childEntity if c.name == "DC0_C0").host, key=lambda h: h.name)
    WaitForTask(hosts[0].EnterMaintenanceMode_Task(timeout=0))
    try:
        topo = targets.locate(session, target()).topology
        assert sorted(topo.hosts) == [h.name for h in hosts[1:]]
        assert topo.unusable == {hosts[0].name: "is in maintenance mode"}
        assert topo.mounts == {h.name: ("LocalDS_0",) for h in hosts[1:]}
        assert not topo.drs
        with pytest.raises(VSphereError) as raised:
            targets.locate(session, target(host=hosts[0].name))
        assert raised.value.message == (f"host {hosts[0].name!r} (vsphere.host) is in maintenance mode;"
                                        " pick another host in vsphere.host")
    finally:
        WaitForTask(hosts[0].ExitMaintenanceMode_Task(timeout=0))


def test_vsphere_host_pins_every_node(sim, session):
    first = sorted(targets.locate(session, target()).topology.hosts)[1]
    topo = targets.locate(session, target(host=first)).topology
    assert list(topo.hosts) == [first] and topo.pinned == first
