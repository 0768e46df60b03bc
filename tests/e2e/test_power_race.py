"""Deploys on a vCenter that powers every clone on by itself (coreos-facts §8): never a power-state failure.

The strict bed with clone_power_on="always" starts a power-on task of its own after each clone task, so the
tool's PowerOnVM_Task always meets InvalidPowerState. The bar: 20 consecutive real `vmcoreos deploy`
runs, each of them cloning (so each meets the race), none failing on power state, the nodes healthy at the end.
The cheapest loop that makes every counted deploy clone: one bed, one node kept, and each round a deploy
--count 2 that clones race-02 followed by a deploy --count 1 --yes that takes it out again (a deploy that
clones nothing, so it is not counted). The vSphere-level loop of 20 boots is tests/e2e/test_power_on.py.
"""

from __future__ import annotations

import json

import pytest

from tests.harness.bed import strict_bed, strict_guests
from tests.e2e.helpers import api_vm, inventory, write_cluster

pytestmark = pytest.mark.e2e

CLONING_DEPLOYS = 20
# vCenter's own power-on lasts this long after the clone task: long enough that the tool's PowerOn (one
# refresh after the clone) always lands inside it even on a loaded machine, short since each round waits it out.
POWER_ON_DELAY = 0.5


def raced_power_ons(sim, name: str) -> int:
    """How many PowerOnVM_Tasks on the VM failed with InvalidPowerState (the tool's, meeting vCenter's own)."""
    from pyVmomi import vim

    with api_vm(sim, name) as vm:
        infos = [t.info for t in vm.recentTask or []]
        assert sum(i.descriptionId == "VirtualMachine.powerOn" for i in infos) == 2, [i.descriptionId for i in infos]
        return sum(i.descriptionId == "VirtualMachine.powerOn" and isinstance(i.error, vim.fault.InvalidPowerState)
                   for i in infos)


@pytest.mark.long  # about 170 s: started first, so the other workers' tests fill the time beside it
def test_consecutive_deploys_never_fail_on_power_state_when_vcenter_powers_clones_on_itself(
        cli, tmp_path, subnet, signed_ova):
    with strict_bed(tmp_path / "vcsim", clone_power_on="always", power_on_delay=POWER_ON_DELAY) as sim:
        for _ in strict_guests(sim, tmp_path / "guests", subnet):
            cluster = write_cluster(tmp_path / "c.yaml", subnet, name="race", count=1, extra={"wait": {"timeout": 30}})

            def deploy(count: int):
                run = cli(["deploy", "-c", str(cluster), "--count", str(count), "--ova", str(signed_ova["ova"]),
                           "--trusted-key", str(signed_ova["key"]), "--yes", "--json"], env=sim.env())
                assert run.returncode == 0, run.stderr
                assert "InvalidPowerState" not in run.stdout + run.stderr
                return json.loads(run.stdout)["nodes"]

            deploy(1)  # the template and race-01 (a clone too, but the bar counts the 20 below)
            for round_ in range(CLONING_DEPLOYS):
                before = inventory(sim)
                assert "race-02" not in before, round_
                nodes = {n["name"]: n for n in deploy(2)}  # clones race-02: vCenter's power-on races the tool's
                assert sorted(nodes) == ["race-01", "race-02"], round_
                assert nodes["race-02"]["action"] == "created", round_
                assert all(n["healthy"] for n in nodes.values()), (round_, nodes)
                assert inventory(sim)["race-02"]["power"] == "poweredOn", round_
                assert raced_power_ons(sim, "race-02") == 1, round_  # this deploy did meet the race
                if round_ < CLONING_DEPLOYS - 1:
                    kept = [n["name"] for n in deploy(1) if n["action"] != "removed"]
                    assert kept == ["race-01"], round_
            status = cli(["status", "-c", str(cluster), "--json"], env=sim.env())
            assert status.returncode == 0, status.stdout + status.stderr
            destroyed = cli(["destroy", "-c", str(cluster), "--yes"], env=sim.env())
            assert destroyed.returncode == 0, destroyed.stderr
