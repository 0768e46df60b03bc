"""The strict bed's hosts, datastores and DRS rules behave as node placement meets them on a real vCenter.

pyvmomi straight to `build/vcsim -strict`: a clone lands on the host and
datastore its RelocateSpec names; a host in maintenance mode or disconnected
takes no new VM; VM-VM anti-affinity rules are written and read through the
cluster's configurationEx.rule; without Host.Inventory.ModifyCluster a rule
change is NoPermission.
"""

from __future__ import annotations

import pytest

from tests.e2e.direct import strict_pyvmomi_bed, wait

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    yield from strict_pyvmomi_bed(tmp_path_factory.mktemp("topology-vcsim"), datastores=2)


class Lab:
    def __init__(self, si):
        content = si.RetrieveContent()
        self.dc = next(e for e in content.rootFolder.childEntity if e.name == "DC0")
        self.cluster = next(c for c in self.dc.hostFolder.childEntity if c.name == "DC0_C0")
        self.hosts = sorted(self.cluster.host, key=lambda h: h.name)
        self.datastores = {d.name: d for d in self.dc.datastore}
        self.vm = next(v for v in self.dc.vmFolder.childEntity if v.name == "DC0_C0_RP0_VM0")

    def clone(self, name, host, datastore="LocalDS_0"):
        from pyVmomi import vim

        spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(
            pool=self.cluster.resourcePool, datastore=self.datastores[datastore], host=host))
        return wait(self.vm.CloneVM_Task(folder=self.dc.vmFolder, name=name, spec=spec))


@pytest.fixture(scope="module")
def lab(bed):
    return Lab(bed[1])


def test_several_hosts_and_datastores_in_the_cluster(lab):
    assert len(lab.hosts) == 3
    assert {"LocalDS_0", "LocalDS_1"} <= set(lab.datastores)
    assert all({d.name for d in h.datastore} >= {"LocalDS_0", "LocalDS_1"} for h in lab.hosts)


def test_a_clone_lands_on_the_host_and_datastore_its_spec_names(lab):
    made = [lab.clone(f"spot-{i}", host, "LocalDS_1") for i, host in enumerate(lab.hosts)]
    try:
        assert [vm.runtime.host for vm in made] == lab.hosts
        assert all([d.name for d in vm.datastore] == ["LocalDS_1"] for vm in made)
    finally:
        for vm in made:
            wait(vm.Destroy_Task())


@pytest.mark.parametrize("enter, leave, fault", [
    ("EnterMaintenanceMode_Task", "ExitMaintenanceMode_Task", "InvalidHostState"),
    ("DisconnectHost_Task", "ReconnectHost_Task", "HostNotConnected"),  # a vmodl (runtime) fault
])
def test_a_host_in_maintenance_or_disconnected_takes_no_new_vm(lab, enter, leave, fault):
    from pyVmomi import vim, vmodl

    host = lab.hosts[1]
    timeout = {"timeout": 0} if "Maintenance" in enter else {}
    wait(getattr(host, enter)(**timeout))
    try:
        assert (host.runtime.inMaintenanceMode, host.runtime.connectionState) != (False, "connected")
        with pytest.raises(getattr(vim.fault, fault, None) or getattr(vmodl.fault, fault)):
            lab.clone("spot-refused", host)
    finally:
        wait(getattr(host, leave)(**timeout))
    vm = lab.clone("spot-after", host)
    try:
        assert vm.runtime.host == host
    finally:
        wait(vm.Destroy_Task())


def test_anti_affinity_rules_are_written_and_read_through_configuration_ex(lab):
    from pyVmomi import vim

    vms = [lab.clone(f"rule-{i}", host) for i, host in enumerate(lab.hosts)]

    def reconfigure(operation, **fields):
        spec = vim.cluster.RuleSpec(operation=operation, **fields)
        wait(lab.cluster.ReconfigureComputeResource_Task(spec=vim.cluster.ConfigSpecEx(rulesSpec=[spec]), modify=True))

    def rules():
        return [r for r in lab.cluster.configurationEx.rule if r.name == "spread"]

    try:
        reconfigure("add", info=vim.cluster.AntiAffinityRuleSpec(name="spread", enabled=True, mandatory=True, vm=vms[:2]))
        [rule] = rules()
        assert isinstance(rule, vim.cluster.AntiAffinityRuleSpec) and rule.enabled and rule.mandatory
        assert rule.vm == vms[:2]
        reconfigure("edit", info=vim.cluster.AntiAffinityRuleSpec(name="spread", key=rule.key, enabled=True,
                                                                   mandatory=False, vm=vms))
        [rule] = rules()
        assert rule.vm == vms and not rule.mandatory
        reconfigure("remove", removeKey=rule.key)
        assert rules() == []
    finally:
        for vm in vms:
            wait(vm.Destroy_Task())


def test_a_rule_change_without_modify_cluster_is_no_permission(tmp_path):
    from pyVmomi import vim

    for sim, si in strict_pyvmomi_bed(tmp_path / "vcsim", drs=True, deny=("Host.Inventory.ModifyCluster",)):
        here = Lab(si)
        cluster = here.cluster
        info = vim.cluster.AntiAffinityRuleSpec(name="x", enabled=True, vm=[here.vm])
        spec = vim.cluster.RuleSpec(operation="add", info=info)
        with pytest.raises(vim.fault.NoPermission) as raised:
            cluster.ReconfigureComputeResource_Task(spec=vim.cluster.ConfigSpecEx(rulesSpec=[spec]), modify=True)
        assert raised.value.privilegeId == "Host.Inventory.ModifyCluster"
        assert not cluster.configurationEx.rule
