"""Fedora CoreOS end to end: a stream served locally, etcd as vmcoreos's podman unit, three healthy members.

The guest simulator passes etcd only what podman would pass into its container (--env, --env-file,
--env-host), so a membership that stopped at podman's own environment would never form a cluster.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.helpers import write_cluster
from tests.e2e.test_node_configs import _assert_three_joined, _guest_ok

VERSION = "43.20261115.3.0"
USER_ONLY = {"ignition": {"version": "3.4.0"},
             "passwd": {"users": [{"name": "ops", "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 ops@lab"]}]}}


@pytest.fixture
def env(vcsim, tmp_path):
    return {**vcsim.env(), "VMCOREOS_LOCK_DIR": str(tmp_path / "locks"), "VMCOREOS_CACHE_DIR": str(tmp_path / "cache")}


@pytest.fixture
def fcos_stream(tmp_path, signer):
    """The stable stream naming one FCOS build, signed by the test key (standing in for Fedora 43's)."""
    from tests.harness.release_server import ReleaseServer, ReleaseTree

    tree = ReleaseTree(tmp_path / "srv", signer)
    with ReleaseServer(tree.root) as server:
        tree.publish_fcos("stable", VERSION, server.url, disk_bytes=2 << 20)
        yield server


def fcos_cluster(tmp_path, subnet, server, signer, *, network=None, etcd=None) -> "Path":
    key = signer.write_public_key(tmp_path / "fedora-test-key.asc")
    (tmp_path / "node.ign").write_text(json.dumps(USER_ONLY, indent=2))
    # The local server is http; the official stream is https and needs no allow_unsigned_version.
    image = {"distro": "fedora-coreos", "channel": "stable", "base_url": f"{server.url}/streams/",
             "trusted_keys": [f"fedora-coreos={key}"], "allow_unsigned_version": True}
    extra = {"image": image}
    if etcd:
        extra["etcd"] = etcd
    cluster = write_cluster(tmp_path / "cluster.yaml", subnet, config="node.ign", extra=extra)
    if network:
        import yaml

        data = yaml.safe_load(cluster.read_text())
        data["node"]["network"] = network
        cluster.write_text(yaml.safe_dump(data, sort_keys=False))
    return cluster


def test_fcos_stream_deploys_three_members_from_a_config_that_only_adds_a_user(
        cli, vcsim, guestsim, fcos_stream, signer, subnet, tmp_path, env):
    cluster = fcos_cluster(tmp_path, subnet, fcos_stream, signer)
    run = cli(["deploy", "-c", str(cluster), "--count", "3", "--json"], env=env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["image_version"] == VERSION
    _assert_three_joined(subnet)
    _guest_ok(guestsim, "ignition")
    node = guestsim.node("lab-02")
    assert node["distro"] == "fedora-coreos"  # played as FCOS: no coreos-cloudinit, no etcd of its own
    # etcd got its membership from the env file through podman, and nothing podman keeps to itself.
    assert node["etcd"]["unit"] == "etcd-member.service"
    assert node["etcd"]["env"]["ETCD_NAME"] == "lab-02" and "ETCD_IMAGE" not in node["etcd"]["env"]
    assert node["etcd"]["env"]["ETCD_DATA_DIR"] == "/var/lib/etcd"
