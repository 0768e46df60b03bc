"""The room check counts a real Flatcar OVA (populatedSize="0": unknown) and vSAN's second copy, before any upload.

The strict bed's datastores are made as small as each test needs (Vcsim(datastore_free=...)), and vSAN by
type (datastore_type="vsan"); the OVA builder writes populatedSize="0" like Flatcar's OVF template.
"""

from __future__ import annotations

import pytest

from tests.e2e.helpers import inventory, write_cluster
from tests.harness.ova_builder import build_ovf_descriptor
from tests.harness.services import Vcsim
from vmcoreos.images import ovf

MiB = 1 << 20
DISK = 8 * MiB  # the test OVA's disk file
MEMORY_MB = 256
SWAPS = 3 * MEMORY_MB * MiB


def test_the_builder_writes_flatcars_zero_and_zero_counts_as_unknown():
    text = build_ovf_descriptor(distro="flatcar", disk_size=DISK, capacity_units="byte * 2^30")
    assert 'ovf:populatedSize="0"' in text
    parsed = ovf.parse(text, "flatcar.ova", "flatcar.ovf")
    assert parsed.populated("flatcar.ova") == DISK  # the disk file's size, not 0


@pytest.fixture(scope="module")
def flatcar_ova(tmp_path_factory, signer):
    from tests.conftest import signed_image

    return signed_image(tmp_path_factory.mktemp("room-ova"), signer, disk_bytes=DISK)


def _deploy_on(cli, tmp_path, subnet, ova, **bed):
    sim = Vcsim(tmp_path / "vcsim", strict=True, drs=True, **bed)
    sim.start()
    try:
        cluster = write_cluster(tmp_path / "c.yaml", subnet, name="room",
                                extra={"node": {"memory_mb": MEMORY_MB}, "wait": {"timeout": 5}})
        run = cli(["deploy", "-c", str(cluster), "--ova", str(ova["ova"]), "--trusted-key", str(ova["key"])],
                  env=sim.env())
        made = [n for n, v in inventory(sim).items() if v["extra"].get("vmcoreos.cluster") == "room"]
    finally:
        sim.stop()
    return run, made


def _refused(run, made) -> str:
    assert run.returncode == 1, run.stderr
    assert "uploading" not in run.stderr and "importing" not in run.stderr
    assert made == []
    return run.stderr.strip().splitlines()[-1]


def test_a_flatcar_shaped_ova_on_a_datastore_too_small_is_refused_before_the_upload(cli, tmp_path, subnet, flatcar_ova):
    # Room for the swap files and two disks; the import and three full clones need four.
    run, made = _deploy_on(cli, tmp_path, subnet, flatcar_ova, datastore_free=SWAPS + 2 * DISK)
    line = _refused(run, made)
    assert "this run writes" in line and "the template import" in line and "3 full clone(s)" in line


def test_vsan_counts_every_byte_twice_and_says_so(cli, tmp_path, subnet, flatcar_ova):
    # Raw, everything fits (4 disks and the swaps); written twice, it does not.
    run, made = _deploy_on(cli, tmp_path, subnet, flatcar_ova, datastore_free=SWAPS + 6 * DISK, datastore_type="vsan")
    line = _refused(run, made)
    assert "each byte x2 on vSAN" in line
    assert "FTT=1, RAID-1" in run.stderr and "does not read the policy (PBM)" in run.stderr


def test_without_thin_provisioning_every_disk_counts_its_capacity(cli, tmp_path, subnet, signer):
    from tests.conftest import signed_image

    # 8 MiB written, 1 GiB provisioned: thin, four disks fit in 1 GiB and the swaps; thick, they do not.
    (tmp_path / "ova").mkdir()
    ova = signed_image(tmp_path / "ova", signer, disk_bytes=DISK, capacity_bytes=1 << 30)
    run, made = _deploy_on(cli, tmp_path, subnet, ova, datastore_free=SWAPS + (1 << 30), datastore_thick=True)
    line = _refused(run, made)
    assert "the template import 1.0 GiB" in line and "3 full clone(s) of 1.0 GiB" in line
