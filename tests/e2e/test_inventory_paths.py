"""Datacenters of one name in two folders are told apart by path; a vApp as the resource pool is refused clearly."""

from __future__ import annotations

import pytest

from tests.e2e.direct import session_on, target
from tests.harness.services import Vcsim
from vmcoreos.errors import ConfigError, VSphereError
from vmcoreos.vsphere import targets

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def twin_datacenters(tmp_path_factory):
    """The strict bed with a second DC0, in root folder "lab", and a vApp "app" in DC0_C0's root pool."""
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    sim = Vcsim(tmp_path_factory.mktemp("twin-dc"), strict=True).start()
    try:
        si = sim.connect()
        content = si.RetrieveContent()
        content.rootFolder.CreateFolder("lab").CreateDatacenter("DC0")
        dc = next(e for e in content.rootFolder.childEntity if e.name == "DC0")
        cluster = next(c for c in dc.hostFolder.childEntity if c.name == "DC0_C0")
        def allocation():
            return vim.ResourceAllocationInfo(reservation=0, limit=-1, expandableReservation=True,
                                              shares=vim.SharesInfo(level="normal", shares=0))

        cluster.resourcePool.CreateVApp("app", vim.ResourceConfigSpec(cpuAllocation=allocation(),
                                                                      memoryAllocation=allocation()),
                                        vim.VAppConfigSpec(), dc.vmFolder)
        Disconnect(si)
        yield sim
    finally:
        sim.stop()


def _refused(sim, kind, **fields) -> str:
    s = session_on(sim)
    try:
        with pytest.raises(kind) as raised:
            targets.locate(s, target(**fields))
    finally:
        s.close()
    return raised.value.message


def test_two_datacenters_of_one_name_are_refused_naming_both_paths(twin_datacenters):
    message = _refused(twin_datacenters, VSphereError)
    assert "datacenter 'DC0' (vsphere.datacenter) resolves to 2 objects: DC0; lab/DC0" in message
    assert "set vsphere.datacenter to one of these paths" in message


def test_a_datacenter_path_picks_one(twin_datacenters):
    # The empty one in lab has no cluster DC0_C0.
    assert "cluster 'DC0_C0' (vsphere.cluster) does not exist" in _refused(twin_datacenters, VSphereError,
                                                                          datacenter="lab/DC0")
    s = session_on(twin_datacenters)
    try:
        assert targets.locate(s, target(datacenter="/DC0")).cluster_name == "DC0_C0"
    finally:
        s.close()


def test_a_vapp_as_the_resource_pool_is_refused(twin_datacenters):
    message = _refused(twin_datacenters, ConfigError, datacenter="/DC0", resource_pool="app")
    assert "vsphere.resource_pool 'app' is a vApp" in message and "\n" not in message
