"""On the strict bed: guest addresses as real VMware Tools report them, thin-disk space."""

from __future__ import annotations

import json

import pytest
import requests

from tests.harness.bed import signed_image
from tests.e2e.helpers import inventory, write_cluster


def _deploy(cli, cluster, ova, vcsim, *extra):
    return cli(
        ["deploy", "-c", str(cluster), "--count", "3", "--ova", str(ova["ova"]),
         "--trusted-key", str(ova["key"]), "--json", *extra],
        env=vcsim.env(),
    )


def test_static_nodes_join_though_tools_report_link_local_then_an_overlay(cli, strict_vcsim, strict_guestsim,
                                                                         signed_ova, subnet, tmp_path):
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, extra={"wait": {"timeout": 45}})
    run = _deploy(cli, cluster, signed_ova, strict_vcsim)
    assert run.returncode == 0, run.stderr
    nodes = {n["name"]: n for n in json.loads(run.stdout)["nodes"]}
    assert {n: s["ip"] for n, s in nodes.items()} == {f"lab-0{i}": f"{subnet}.1{i}" for i in (1, 2, 3)}
    assert all(s["healthy"] for s in nodes.values())
    # status reaches etcd at the configured addresses too, whatever guest.ipAddress says by now.
    status = cli(["status", "-c", str(cluster), "--json"], env=strict_vcsim.env())
    assert status.returncode == 0, status.stderr
    assert {n["name"]: n["ip"] for n in json.loads(status.stdout)["nodes"]} == {n: s["ip"] for n, s in nodes.items()}


def test_dhcp_nodes_use_their_first_nics_lease(cli, strict_vcsim, strict_guestsim, signed_ova, subnet, tmp_path):
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet,
                            extra={"node": {"network": {"mode": "dhcp"}}, "wait": {"timeout": 60}})
    run = _deploy(cli, cluster, signed_ova, strict_vcsim)
    assert run.returncode == 0, run.stderr
    nodes = json.loads(run.stdout)["nodes"]
    for node in nodes:
        leased = strict_guestsim.node(node["name"])["ip"]
        assert node["ip"] == leased and leased.startswith(f"{subnet}.1")
        listing = requests.post(f"http://{leased}:2379/v3/cluster/member/list", json={}, timeout=5).json()
        assert sorted(m["name"] for m in listing["members"]) == ["lab-01", "lab-02", "lab-03"]
        assert all(u.startswith(f"http://{subnet}.1") for m in listing["members"] for u in m["peerURLs"])


GiB = 1 << 30


@pytest.fixture(scope="module")
def roomy_ova(tmp_path_factory, signer):
    """4 MiB written, 100 GiB provisioned: four such disks are more than the bed's datastore holds."""
    return signed_image(tmp_path_factory.mktemp("roomy-ova"), signer, disk_bytes=4 << 20, capacity_bytes=100 * GiB)


def _free(vcsim) -> int:
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    si = vcsim.connect()
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.Datastore], True)
        free = next(d.summary.freeSpace for d in view.view if d.name == "LocalDS_0")
        view.Destroy()
        return free
    finally:
        Disconnect(si)


def test_thin_disks_count_what_they_hold_not_what_they_may_grow_to(cli, strict_vcsim, strict_guestsim, roomy_ova,
                                                                  subnet, tmp_path):
    assert 4 * 100 * GiB > _free(strict_vcsim)  # counted at capacity, this run would be refused
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, extra={"wait": {"timeout": 45}})
    run = _deploy(cli, cluster, roomy_ova, strict_vcsim)
    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "thin disks and swap files may grow to" in warnings[0], run.stderr


def test_a_real_shortfall_is_refused_before_the_upload(cli, strict_vcsim, signed_ova, subnet, tmp_path):
    free = _free(strict_vcsim)
    memory_mb = (free // 3 >> 20) // 4 * 4 + 4096  # three nodes' swap files alone overflow the datastore
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, extra={"node": {"memory_mb": memory_mb}})
    run = _deploy(cli, cluster, signed_ova, strict_vcsim)
    assert run.returncode == 1
    assert "3 swap file(s)" in run.stderr and "lower the count or node.memory_mb" in run.stderr
    assert "uploading" not in run.stderr
    assert not [n for n, v in inventory(strict_vcsim).items() if v["extra"].get("vmcoreos.cluster") == "lab"]


def test_a_datastore_cluster_is_refused_by_name_with_its_datastores(cli, strict_vcsim, signed_ova, subnet, tmp_path):
    from pyVim.connect import Disconnect
    from pyVim.task import WaitForTask

    si = strict_vcsim.connect()
    try:
        dc = next(e for e in si.RetrieveContent().rootFolder.childEntity if e.name == "DC0")
        pod = dc.datastoreFolder.CreateStoragePod("pod0")
        WaitForTask(pod.MoveIntoFolder_Task([next(d for d in dc.datastore if d.name == "LocalDS_0")]))
    finally:
        Disconnect(si)
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, extra={"vsphere": {"datastore": "pod0"}})
    run = _deploy(cli, cluster, signed_ova, strict_vcsim)
    assert run.returncode == 1
    assert ("vsphere.datastore 'pod0' is a datastore cluster (StoragePod), which vmcoreos does not place into;"
            " name one of its datastores instead: LocalDS_0") in run.stderr
    assert "verifying" not in run.stderr  # refused before the image is even read


def test_the_longest_cluster_name_gets_a_template_name_vcenter_accepts(cli, strict_vcsim, strict_guestsim, signed_ova,
                                                                      subnet, tmp_path):
    name = "a" * 40 + "-lab-staging"  # 52 characters, the most the cluster file allows
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, name=name, extra={"wait": {"timeout": 45}})
    run = cli(["deploy", "-c", str(cluster), "--count", "1", "--ova", str(signed_ova["ova"]),
               "--trusted-key", str(signed_ova["key"]), "--json"], env=strict_vcsim.env())
    assert run.returncode == 0, run.stderr
    template = json.loads(run.stdout)["template"]
    assert len(template) < 80 and template.startswith(f"{name}-template-")
    assert inventory(strict_vcsim)[template]["template"]


def test_memory_esxi_would_refuse_stops_the_deploy_before_the_image_is_read(cli, strict_vcsim, signed_ova, subnet,
                                                                           tmp_path):
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, extra={"node": {"memory_mb": 1001}})
    run = _deploy(cli, cluster, signed_ova, strict_vcsim)
    assert run.returncode == 2
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmcoreos: error: "), run.stderr
    assert lines[0].endswith("node.memory_mb: 1001 is not a multiple of 4, which ESXi refuses; use 1000 or 1004")
