"""A whole deploy on a vCenter that powers every clone on by itself (coreos-facts §8): never a power-state failure.

The strict bed with clone_power_on="always" starts a power-on task of its own after each clone task, so the
tool's PowerOnVM_Task always meets InvalidPowerState; the nodes still boot and join. The loop of 20 boots is
tests/vsphere/test_power_on.py; this is the deploy and scale-up around it.
"""

from __future__ import annotations

import json

from tests.harness.bed import strict_bed, strict_guests
from tests.e2e.helpers import write_cluster


def test_deploy_and_scale_up_when_vcenter_powers_clones_on_itself(cli, tmp_path, subnet, signed_ova):
    with strict_bed(tmp_path / "vcsim", clone_power_on="always", power_on_delay=0.2) as sim:
        for _ in strict_guests(sim, tmp_path / "guests", subnet):
            cluster = write_cluster(tmp_path / "c.yaml", subnet, name="race", count=1, extra={"wait": {"timeout": 45}})
            for count in ("1", "2"):
                run = cli(["deploy", "-c", str(cluster), "--count", count, "--ova", str(signed_ova["ova"]),
                           "--trusted-key", str(signed_ova["key"]), "--json"], env=sim.env())
                assert run.returncode == 0, run.stderr
                assert "InvalidPowerState" not in run.stderr
            nodes = json.loads(run.stdout)["nodes"]
            assert sorted(n["name"] for n in nodes) == ["race-01", "race-02"]
            destroyed = cli(["destroy", "-c", str(cluster), "--yes"], env=sim.env())
            assert destroyed.returncode == 0, destroyed.stderr
