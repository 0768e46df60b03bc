"""Fedora CoreOS end to end: a stream served locally, etcd as vmcoreos's podman unit, three healthy members.

The guest simulator passes etcd only what podman would pass into its container (--env, --env-file,
--env-host), so a membership that stopped at podman's own environment would never form a cluster.
"""

from __future__ import annotations

import json


from tests.e2e.helpers import FCOS_VERSION, assert_guests_ok, assert_three_joined, fcos_cluster

def test_fcos_stream_deploys_three_members_from_a_config_that_only_adds_a_user(
        cli, vcsim, guestsim, fcos_stream, signer, subnet, tmp_path, env):
    cluster = fcos_cluster(tmp_path, subnet, fcos_stream, signer)
    run = cli(["deploy", "-c", str(cluster), "--count", "3", "--json"], env=env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["image_version"] == FCOS_VERSION
    assert_three_joined(subnet)
    assert_guests_ok(guestsim, "ignition")
    node = guestsim.node("lab-02")
    assert node["distro"] == "fedora-coreos"  # played as FCOS: no coreos-cloudinit, no etcd of its own
    # etcd got its membership from the env file through podman, and nothing podman keeps to itself.
    assert node["etcd"]["unit"] == "etcd-member.service"
    assert node["etcd"]["env"]["ETCD_NAME"] == "lab-02" and "ETCD_IMAGE" not in node["etcd"]["env"]
    assert node["etcd"]["env"]["ETCD_DATA_DIR"] == "/var/lib/etcd"
