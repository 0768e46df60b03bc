"""The seed's own cloud-config (coreos-facts §10), verbatim: convert finds its slips, and once fixed it deploys."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.e2e.helpers import write_cluster
from tests.e2e.helpers import assert_guests_ok, assert_three_joined, deploy_three

SEED = Path(__file__).resolve().parents[1] / "guest" / "data" / "seed-verbatim.yaml"


def test_the_seed_converts_once_its_nameless_user_is_fixed_and_deploys(cli, vcsim, guestsim, signed_ova, subnet,
                                                                       tmp_path):
    shutil.copy(SEED, tmp_path / "seed.yaml")
    refused = cli(["convert", str(tmp_path / "seed.yaml"), "-o", str(tmp_path / "node.yaml")])
    assert refused.returncode == 2 and not (tmp_path / "node.yaml").exists()
    assert "users[1] has no name" in refused.stderr and "indent them under it" in refused.stderr
    assert "static.network" in refused.stderr

    (tmp_path / "seed.yaml").write_text(SEED.read_text().replace("    - groups:\n", "      groups:\n"))
    run = cli(["convert", str(tmp_path / "seed.yaml"), "-o", str(tmp_path / "node.yaml")])
    assert run.returncode == 0, run.stderr
    assert "node.network: {mode: static, addresses: [192.168.249.20-192.168.249.22/24]" in run.stderr
    assert "Name=enp0s3" not in (tmp_path / "node.yaml").read_text()

    # The suggested node.network with this test's addresses; etcd on 2379/2380 as convert advised.
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, config="node.yaml")
    deployed = deploy_three(cli, cluster, signed_ova, vcsim)
    assert deployed.returncode == 0, deployed.stderr
    assert_three_joined(subnet)
    assert_guests_ok(guestsim, "cloud-config")
    assert guestsim.node("lab-01")["etcd"]["unit"] == "etcd-member.service"
    assert guestsim.node("lab-01")["users"] == [{"name": "toor", "groups": ["sudo", "docker"]}]  # what the slip lost
