"""A node with two NICs gets its address on the right one: the NIC whose MAC vmcoreos set and its config names.

The OVA here has two vmxnet3 NICs. With the old `Name=e*` match both would have taken the same static
address (the guest simulator reports that as an error, and guest tools would show it on both); matched
by MAC, the first NIC has it and the second keeps Flatcar's default DHCP.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.harness.bed import signed_image
from tests.e2e.helpers import write_cluster
from tests.e2e.helpers import CONFIGS, assert_guests_ok, assert_three_joined, deploy_three


@pytest.fixture(scope="module")
def two_nic_ova(tmp_path_factory, signer):
    return signed_image(tmp_path_factory.mktemp("two-nic-ova"), signer, disk_bytes=2 << 20, nics=2)


@pytest.mark.parametrize("config, kind", [("flatcar-etcd-member.yaml", "cloud-config"),
                                          ("flatcar-ignition.json", "ignition")])
def test_the_static_address_lands_on_the_nic_with_the_nodes_mac(cli, vcsim, guestsim, two_nic_ova, subnet, tmp_path,
                                                                config, kind):
    shutil.copy(CONFIGS / config, tmp_path / config)
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, config=config)
    run = deploy_three(cli, cluster, two_nic_ova, vcsim)
    assert run.returncode == 0, run.stderr
    assert_three_joined(subnet)
    assert_guests_ok(guestsim, kind)
    render = json.loads(cli(["render", "-c", str(cluster), "--json"]).stdout)
    macs = {n["name"]: n["mac"] for n in render["nodes"]}
    for i, name in enumerate(("lab-01", "lab-02", "lab-03"), start=1):
        first, second = guestsim.node(name)["links"]
        assert (first["name"], first["mac"].lower(), first["ip"]) == ("ens192", macs[name], f"{subnet}.1{i}")
        assert second["name"] == "ens224" and second["mac"].lower() != macs[name]
        assert second["ip"].startswith(f"{subnet}.1") and second["ip"] != first["ip"]  # its own DHCP lease
