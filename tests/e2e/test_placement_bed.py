"""Failure domains end to end: etcd members on different hosts and datastores, the DRS rule, status.

The strict bed's DC0_C0 has three hosts. Without DRS vmcoreos names each
clone's host; with DRS it also keeps an anti-affinity rule holding exactly
the nodes.
"""

from __future__ import annotations

import contextlib
import json

import pytest

from tests.harness.bed import strict_bed, strict_guests
from tests.e2e import etcdclient
from tests.e2e.helpers import api_vm, write_cluster
from tests.harness.services import Vcsim
from vmcoreos import etcd


@pytest.fixture
def nodrs(tmp_path, subnet):
    """The strict bed with DRS off, whatever VMCOREOS_TEST_PROFILE says (the plain simulator ignores the host a
    clone spec names), and its guests."""
    sim = Vcsim(tmp_path / "nodrs-vcsim", strict=True)
    try:
        sim.start()
        for _ in strict_guests(sim, tmp_path / "nodrs-guests", subnet):
            yield sim
    finally:
        sim.stop()


def _image(ova):
    return ["--ova", str(ova["ova"]), "--sig", str(ova["sig"]), "--trusted-key", str(ova["key"])]


def _deploy(cli, cluster, ova, env, count, *extra):
    return cli(["deploy", "-c", str(cluster), "--count", str(count), "--json", *_image(ova), *extra], env=env)


def _status(cli, cluster, env):
    run = cli(["status", "-c", str(cluster), "--json"], env=env)
    return run.returncode, {n["name"]: n for n in json.loads(run.stdout)["nodes"]}, json.loads(run.stdout)


@contextlib.contextmanager
def _api(sim):
    from pyVim.connect import Disconnect

    si = sim.connect()
    try:
        content = si.RetrieveContent()
        dc = next(e for e in content.rootFolder.childEntity if e.name == "DC0")
        yield content, dc, next(c for c in dc.hostFolder.childEntity if c.name == "DC0_C0")
    finally:
        Disconnect(si)


def _where(sim, cluster: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """node -> (host name, datastore names) for the cluster's node VMs."""
    from pyVmomi import vim

    with _api(sim) as (content, dc, _):
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        out = {vm.name: (vm.runtime.host.name, tuple(d.name for d in vm.datastore))
               for vm in view.view if vm.name.startswith(f"{cluster}-0") and not vm.config.template}
        view.Destroy()
    return out


def _rules(sim) -> dict[str, tuple[bool, bool, list[str]]]:
    """rule name -> (enabled, mandatory, VM names) on DC0_C0."""
    with _api(sim) as (_, _, compute):
        return {r.name: (bool(r.enabled), bool(r.mandatory), sorted(v.name for v in r.vm or []))
                for r in compute.configurationEx.rule or []}


def _host_task(sim, index: int, method: str) -> str:
    """Run a maintenance-mode task on DC0_C0's index-th host by name; returns its name."""
    from pyVim.task import WaitForTask

    with _api(sim) as (_, _, compute):
        host = sorted(compute.host, key=lambda h: h.name)[index]
        WaitForTask(getattr(host, method)(timeout=0))
        return host.name


def test_without_drs_three_members_land_on_three_hosts_and_status_shows_where(cli, nodrs, signed_ova, subnet,
                                                                              tmp_path):
    vcsim = nodrs
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name="apart")
    run = _deploy(cli, cluster, signed_ova, vcsim.env(), 3)
    assert run.returncode == 0, run.stderr
    where = _where(vcsim, "apart")
    assert len({host for host, _ in where.values()}) == 3
    assert "usable host" not in run.stderr  # enough hosts: no warning

    code, rows, data = _status(cli, cluster, vcsim.env())
    assert code == 0 and data["state"] == "healthy" and data["placement_degraded"] is False
    assert {n: (r["host"], (r["datastore"],)) for n, r in rows.items()} == where
    assert all(r["shares"] == "" for r in rows.values())
    table = cli(["status", "-c", str(cluster)], env=vcsim.env())
    assert "HOST" in table.stdout and "DATASTORE" in table.stdout
    assert all(host in table.stdout for host, _ in where.values())
    assert _rules(vcsim) == {}  # DRS off: no rule


def test_a_host_in_maintenance_is_skipped_and_a_rebuild_restores_the_spread(cli, nodrs, signed_ova, subnet,
                                                                            tmp_path):
    vcsim = nodrs
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name="maint")
    env = vcsim.env()
    down = _host_task(vcsim, 0, "EnterMaintenanceMode_Task")
    run = _deploy(cli, cluster, signed_ova, env, 3)
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("3 etcd members on 2 usable host(s)") == 1  # warned once
    hosts = [host for host, _ in _where(vcsim, "maint").values()]
    assert down not in hosts and len(set(hosts)) == 2

    # Two usable hosts: sharing cannot be helped, so it is shown but not degraded.
    code, rows, _ = _status(cli, cluster, env)
    assert code == 0
    assert sorted(bool(r["shares"]) for r in rows.values()) == [False, True, True]

    # The host is back: two members share although a host is free, which is degraded placement (exit 7).
    _host_task(vcsim, 0, "ExitMaintenanceMode_Task")
    code, rows, data = _status(cli, cluster, env)
    assert code == 7, rows
    assert data["state"] == "degraded"
    text = cli(["status", "-c", str(cluster)], env=env)
    assert text.returncode == 7 and "host with maint-0" in text.stdout

    # A rolling rebuild puts each replacement on the free host: three hosts again.
    run = cli(["rebuild", "-c", str(cluster), "--force", "--json", *_image(signed_ova)], env=env)
    assert run.returncode == 0, run.stderr
    assert len({host for host, _ in _where(vcsim, "maint").values()}) == 3
    code, rows, _ = _status(cli, cluster, env)
    assert code == 0 and all(r["shares"] == "" for r in rows.values())


def test_on_drs_the_rule_holds_exactly_the_nodes_from_deploy_to_destroy(cli, strict_vcsim, strict_guestsim,
                                                                        signed_ova, subnet, tmp_path):
    from pyVim.task import WaitForTask
    from pyVmomi import vim

    env = strict_vcsim.env()
    # Someone else's rule: never touched.
    with _api(strict_vcsim) as (content, dc, compute):
        theirs = [v for v in dc.vmFolder.childEntity if isinstance(v, vim.VirtualMachine)][:2]
        info = vim.cluster.AntiAffinityRuleSpec(name="theirs", enabled=False, mandatory=False, vm=theirs)
        spec = vim.cluster.ConfigSpecEx(rulesSpec=[vim.cluster.RuleSpec(operation="add", info=info)])
        WaitForTask(compute.ReconfigureComputeResource_Task(spec=spec, modify=True))
    before = _rules(strict_vcsim)["theirs"]

    cluster = write_cluster(tmp_path / "c.yaml", subnet, name="drs")
    run = _deploy(cli, cluster, signed_ova, env, 3)
    assert run.returncode == 0, run.stderr
    rules = _rules(strict_vcsim)
    assert rules["vmcoreos-drs-etcd"] == (True, True, ["drs-01", "drs-02", "drs-03"])
    assert len({host for host, _ in _where(strict_vcsim, "drs").values()}) == 3
    code, _, data = _status(cli, cluster, env)
    assert code == 0 and data["drs_rule"] == "exact"

    # A fourth member on three hosts: it joins the rule, which becomes a "should" so it can power on.
    run = _deploy(cli, cluster, signed_ova, env, 4)
    assert run.returncode == 0, run.stderr
    assert "4 etcd members on 3 usable host(s)" in run.stderr
    assert _rules(strict_vcsim)["vmcoreos-drs-etcd"] == (True, False, ["drs-01", "drs-02", "drs-03", "drs-04"])

    # Back to three: the removed node leaves the rule, which is a "must" again.
    run = _deploy(cli, cluster, signed_ova, env, 3, "--yes")
    assert run.returncode == 0, run.stderr
    assert _rules(strict_vcsim)["vmcoreos-drs-etcd"] == (True, True, ["drs-01", "drs-02", "drs-03"])

    # A rolling rebuild: each replacement joins the rule, the replaced VM leaves it.
    run = cli(["rebuild", "-c", str(cluster), "--force", "--json", *_image(signed_ova)], env=env)
    assert run.returncode == 0, run.stderr
    assert _rules(strict_vcsim)["vmcoreos-drs-etcd"] == (True, True, ["drs-01", "drs-02", "drs-03"])
    assert len({host for host, _ in _where(strict_vcsim, "drs").values()}) == 3

    # A node taken out behind vmcoreos's back (member removed, VM deleted; the bed, unlike vCenter, keeps the
    # deleted VM in the rule): the next deploy makes it again and the rule holds exactly the nodes there are.
    first = f"http://{subnet}.11:2379"
    gone = next(m["ID"] for m in etcdclient.members(first) if m.get("name") == "drs-03")
    etcd.Client().member_remove(first, format(int(gone), "x"))  # patient: etcd refuses for a while after a join
    with api_vm(strict_vcsim, "drs-03") as vm:
        WaitForTask(vm.PowerOffVM_Task())
        WaitForTask(vm.Destroy_Task())
    run = _deploy(cli, cluster, signed_ova, env, 3)
    assert run.returncode == 0, run.stderr
    assert _rules(strict_vcsim)["vmcoreos-drs-etcd"] == (True, True, ["drs-01", "drs-02", "drs-03"])

    run = cli(["destroy", "-c", str(cluster), "--yes"], env=env)
    assert run.returncode == 0, run.stderr
    assert _rules(strict_vcsim) == {"theirs": before}


def test_a_rule_named_like_ours_holding_a_stranger_is_left_alone(cli, strict_vcsim, strict_guestsim, signed_ova,
                                                                 subnet, tmp_path):
    from pyVim.task import WaitForTask
    from pyVmomi import vim

    with _api(strict_vcsim) as (content, dc, compute):
        theirs = [v for v in dc.vmFolder.childEntity if isinstance(v, vim.VirtualMachine)][:2]
        info = vim.cluster.AntiAffinityRuleSpec(name="vmcoreos-odd-etcd", enabled=True, vm=theirs)
        spec = vim.cluster.ConfigSpecEx(rulesSpec=[vim.cluster.RuleSpec(operation="add", info=info)])
        WaitForTask(compute.ReconfigureComputeResource_Task(spec=spec, modify=True))
    before = _rules(strict_vcsim)
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name="odd", count=2)
    run = _deploy(cli, cluster, signed_ova, strict_vcsim.env(), 2)
    assert run.returncode == 0, run.stderr
    assert "which vmcoreos did not create, so it is not ours and was left alone" in run.stderr
    assert _rules(strict_vcsim) == before
    run = cli(["destroy", "-c", str(cluster), "--yes"], env=strict_vcsim.env())
    assert run.returncode == 0, run.stderr
    assert _rules(strict_vcsim) == before


def test_without_modify_cluster_the_deploy_warns_and_succeeds(cli, signed_ova, subnet, tmp_path):
    with strict_bed(tmp_path / "deny-vcsim", deny=("Host.Inventory.ModifyCluster",)) as sim:
        for _ in strict_guests(sim, tmp_path / "guests", subnet):
            cluster = write_cluster(tmp_path / "c.yaml", subnet, name="noperm", count=2)
            run = _deploy(cli, cluster, signed_ova, sim.env(), 2)
            assert run.returncode == 0, run.stderr
            assert "could not create DRS rule 'vmcoreos-noperm-etcd'" in run.stderr
            assert "lacks Host.Inventory.ModifyCluster" in run.stderr
            assert _rules(sim) == {}
            assert len({host for host, _ in _where(sim, "noperm").values()}) == 2
            status = cli(["status", "-c", str(cluster)], env=sim.env())
            assert status.returncode == 0 and "DRS rule vmcoreos-noperm-etcd is missing" in status.stderr
            assert cli(["destroy", "-c", str(cluster), "--yes"], env=sim.env()).returncode == 0


def test_members_spread_over_the_datastores_named(cli, signed_ova, subnet, tmp_path):
    sim = Vcsim(tmp_path / "ds-vcsim", strict=True, datastores=2)
    try:
        sim.start()
        for _ in strict_guests(sim, tmp_path / "guests", subnet):
            cluster = write_cluster(tmp_path / "c.yaml", subnet, name="stores",
                                    extra={"vsphere": {"datastore": None, "datastores": ["LocalDS_0", "LocalDS_1"]}})
            run = _deploy(cli, cluster, signed_ova, sim.env(), 3)
            assert run.returncode == 0, run.stderr
            where = _where(sim, "stores")
            assert sorted(ds for _, ds in where.values()) == [("LocalDS_0",), ("LocalDS_0",), ("LocalDS_1",)]
            assert len({host for host, _ in where.values()}) == 3
            assert "2 datastore(s)" in run.stderr  # three members, two datastores: said once
            code, rows, _ = _status(cli, cluster, sim.env())
            assert code == 0
            assert sorted(r["datastore"] for r in rows.values()) == ["LocalDS_0", "LocalDS_0", "LocalDS_1"]
            assert sorted(bool(r["shares"]) for r in rows.values()) == [False, True, True]
    finally:
        sim.stop()


@pytest.mark.parametrize("datastores, message", [
    (["LocalDS_0", "LocalDS_0"], "names a datastore twice"),
])
def test_a_datastore_listed_twice_is_refused(cli, vcsim, signed_ova, subnet, tmp_path, datastores, message):
    cluster = write_cluster(tmp_path / "c.yaml", subnet, name="twice",
                            extra={"vsphere": {"datastore": None, "datastores": datastores}})
    run = _deploy(cli, cluster, signed_ova, vcsim.env(), 3)
    assert run.returncode == 2
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1
