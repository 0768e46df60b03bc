"""The room check counts a real Flatcar OVA (populatedSize="0": unknown) and vSAN's copies, before any upload.

The strict bed's datastores are made as small as each test needs (Vcsim(datastore_free=...)), vSAN by type
(datastore_type="vsan") with its default policy's FTT in PBM (vsan_ftt), or without thin provisioning
(datastore_thick); the OVA builder writes populatedSize="0" like Flatcar's OVF template.
"""

from __future__ import annotations

import pytest

from tests.e2e.helpers import inventory, write_cluster
from tests.harness.ova_builder import build_ovf_descriptor
from tests.harness.services import Vcsim
from vmcoreos.images.archive import ovf

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
    from tests.harness.bed import signed_image

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


def test_vsan_counts_what_its_default_policy_writes_read_through_pbm(cli, tmp_path, subnet, flatcar_ova):
    # FTT=2 RAID-1 keeps three copies: room for twice the bytes is not enough.
    run, made = _deploy_on(cli, tmp_path, subnet, flatcar_ova, datastore_free=2 * (SWAPS + 4 * DISK),
                           datastore_type="vsan", vsan_ftt=2)
    line = _refused(run, made)
    assert "each byte x3 on vSAN" in line
    assert "default storage policy 'vSAN Default Storage Policy' (FTT=2, RAID-1) writes every byte x3" in run.stderr


def test_vsan_without_a_policy_from_pbm_assumes_two_copies_and_says_so(cli, tmp_path, subnet, flatcar_ova):
    # Raw, everything fits (4 disks and the swaps); written twice, it does not.
    run, made = _deploy_on(cli, tmp_path, subnet, flatcar_ova, datastore_free=SWAPS + 6 * DISK, datastore_type="vsan",
                           vsan_ftt=0)
    line = _refused(run, made)
    assert "each byte x2 on vSAN" in line
    assert "PBM names no default storage policy for it" in run.stderr and "(FTT=1, RAID-1)" in run.stderr


def test_without_thin_provisioning_every_disk_counts_its_capacity(cli, tmp_path, subnet, signer):
    from tests.harness.bed import signed_image

    # 8 MiB written, 1 GiB provisioned: thin, four disks fit in 1 GiB and the swaps; thick, they do not.
    (tmp_path / "ova").mkdir()
    ova = signed_image(tmp_path / "ova", signer, disk_bytes=DISK, capacity_bytes=1 << 30)
    run, made = _deploy_on(cli, tmp_path, subnet, ova, datastore_free=SWAPS + (1 << 30), datastore_thick=True)
    line = _refused(run, made)
    assert "the template import 1.0 GiB" in line and "3 full clone(s) of 1.0 GiB" in line
