"""One owner of power-on: the tool. A vCenter that powers a clone on by itself is no failure (coreos-facts §8).

vCenter powers a clone whose spec says powerOn on in a task of its own after the clone task; a PowerOn sent
meanwhile fails with InvalidPowerState. The strict bed does the same, and with clone_power_on="always" it powers
every clone on by itself, whatever its spec says, so the tool's own PowerOn always races one.
"""

from __future__ import annotations

import pytest

from tests.e2e.direct import session_on, target
from tests.harness.services import Vcsim
from vmcoreos.images.archive.ova import OvaArchive
from vmcoreos.vsphere import importer, targets, power, vms
from vmcoreos.vsphere.waits import wait_task

pytestmark = pytest.mark.e2e

ROUNDS = 20


@pytest.fixture
def racing_bed(tmp_path, signed_ova):
    """A strict bed that powers every clone on by itself, a session on it and an imported template."""
    sim = Vcsim(tmp_path / "vcsim", strict=True, drs=True, clone_power_on="always", power_on_delay=0.05)
    sim.start()
    session = session_on(sim)
    placement = targets.locate(session, target())
    try:
        with OvaArchive(signed_ova["ova"]) as archive:
            ref = importer.import_ova(session, archive, placement, "race-template", vms.marks("race", "template"))
        ref.MarkAsTemplate()
        template = vms.refresh(session, vms.VmInfo(ref, "race-template", True, "poweredOff", None, None))
        yield session, placement, template
        wait_task(session, ref.Destroy_Task())
    finally:
        session.close()
        sim.stop()


def test_clone_specs_leave_power_on_to_the_tool():
    spec = vms.clone_spec(targets.Placement(None, None, None, None, "n", None, "c"), cpus=2, memory_mb=2048, extra={})
    assert spec.powerOn is False


def test_consecutive_boots_never_fail_on_power_state_when_vcenter_powers_clones_on_itself(racing_bed):
    session, placement, template = racing_bed
    for round_ in range(ROUNDS):
        name = f"race-{round_:02d}"
        spec = vms.clone_spec(placement, cpus=1, memory_mb=256, extra=vms.marks("race", "node"))
        (ref,) = vms.clone_many(session, template, [(name, spec)], placement, cluster="race")
        made = vms.refresh_many(session, [vms.VmInfo(ref, name, False, "", None, None)])
        power.on_many(session, made)  # raced by the bed's own power-on every time
        (now,) = vms.refresh_many(session, made)
        assert now.power == "poweredOn", round_
        vms.destroy(session, now, "race")
