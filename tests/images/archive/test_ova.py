import pytest

from tests.harness.ova_builder import build_ova
from vmcoreos.errors import UnsafeArchiveError, VerificationError
from vmcoreos.images.archive import ovf
from vmcoreos.images.archive.ova import OvaArchive
from vmcoreos.images.transfer.taps import pump


def test_reads_descriptor_manifest_and_streams_the_disk(tmp_path):
    ova = build_ova(tmp_path / "a.ova", disk_bytes=3 << 20)
    with OvaArchive(ova) as archive:
        assert archive.names()[0].endswith(".ovf")
        disk = archive.descriptor.files[0].href
        assert disk.endswith(".vmdk")
        check = archive.manifest_check(disk)
        stream, size = archive.open(disk)
        assert size == 3 << 20
        with stream:
            assert pump(stream, [check]) == size
        check.finish()
        archive.verify_descriptor_against_manifest()


@pytest.mark.parametrize(
    "defect,message",
    [
        ("absolute-name", "points outside the archive"),
        ("dotdot-name", "points outside the archive"),
        ("symlink", "is a link"),
        ("hardlink", "is a link"),
        ("device", "device or special file"),
        ("no-ovf", "has no .ovf descriptor"),
        ("missing-disk", "archive has no such member"),
        ("truncated", "the OVA is truncated"),
    ],
)
def test_unsafe_archives_are_refused_before_any_read(tmp_path, defect, message):
    ova = build_ova(tmp_path / "bad.ova", defect=defect)
    with pytest.raises(UnsafeArchiveError, match=message):
        OvaArchive(ova)


@pytest.mark.parametrize("defect", ["bad-sha1", "bad-sha256"])
def test_manifest_mismatch_is_caught_on_the_streamed_bytes(tmp_path, defect):
    ova = build_ova(tmp_path / "bad.ova", defect=defect)
    with OvaArchive(ova) as archive:
        disk = archive.descriptor.files[0].href
        check = archive.manifest_check(disk)
        stream, _ = archive.open(disk)
        with stream:
            pump(stream, [check])
        with pytest.raises(UnsafeArchiveError, match="manifest does not match"):
            check.finish()


def test_not_a_tar(tmp_path):
    f = tmp_path / "x.ova"
    f.write_bytes(b"hello" * 1000)
    with pytest.raises(UnsafeArchiveError, match="not a readable OVA"):
        OvaArchive(f)


# -- allocation units are bounded -------------------------------------------------------------


@pytest.mark.parametrize("units, factor", [("byte", 1), ("byte * 2^20", 1 << 20), ("byte * 1024", 1024), ("byte*2^30", 1 << 30)])
def test_allocation_units(units, factor):
    from vmcoreos.images.archive.ovf import allocation_units as _allocation_units

    assert _allocation_units(units) == factor


@pytest.mark.parametrize("units", ["byte * 2^100", "byte * 9^999999999", "byte * 10^999", "byte * x", "bit * 2^3"])
def test_absurd_allocation_units_are_refused_at_once(tmp_path, units):
    import time

    ova = build_ova(tmp_path / "a.ova", disk_bytes=1 << 10)
    with OvaArchive(ova) as archive:
        text = archive.descriptor.text.replace('ovf:capacityAllocationUnits="byte"', f'ovf:capacityAllocationUnits="{units}"')
        assert text != archive.descriptor.text
        archive.descriptor = ovf.parse(text, archive.name, "a.ovf")
        started = time.monotonic()
        with pytest.raises(UnsafeArchiveError, match="allocation unit"):
            archive.disk_capacity()
        assert time.monotonic() - started < 1


def test_an_absurd_capacity_is_refused(tmp_path):
    import re

    ova = build_ova(tmp_path / "a.ova", disk_bytes=1 << 10)
    with OvaArchive(ova) as archive:
        text = re.sub(r'ovf:capacity="\d+"', 'ovf:capacity="' + "9" * 5000 + '"', archive.descriptor.text)
        archive.descriptor = ovf.parse(text, archive.name, "a.ovf")
        with pytest.raises(UnsafeArchiveError, match="is not a size"):
            archive.disk_capacity()


@pytest.mark.parametrize("defect", ["bad-sha1", "bad-sha256"])
def test_a_verified_image_is_not_hashed_again_on_upload_but_its_manifest_check_still_reads(tmp_path, defect):
    # The image's one pass checked the .mf digests and the upload reads the descriptor held to that
    # pass's identity: a second SHA-1 during the upload would only take a core from TLS.
    from vmcoreos.images.verified import VerifiedImage, identity, open_image
    from vmcoreos.images.verified_upload import upload_read

    good = build_ova(tmp_path / "good.ova", disk_bytes=1 << 20)
    f = open_image(good)
    image = VerifiedImage(good, "flatcar", "local-x", "0" * 128, good.stat().st_size, None, file=f, identity=identity(f))
    try:
        with upload_read(image) as archive:
            assert archive.manifest_check(archive.descriptor.files[0].href) is None
            stream, _ = archive.open(archive.descriptor.files[0].href)
            with stream:
                stream.read()
            # Its one read is hashed instead, and held to the verified SHA-512 (here a wrong one).
            with pytest.raises(VerificationError, match="are not the ones verified"):
                archive.verify_uploaded()
    finally:
        image.close()
    with OvaArchive(good) as unverified:
        assert unverified.manifest_check(unverified.descriptor.files[0].href) is not None
    bad = build_ova(tmp_path / "bad.ova", defect=defect)
    with bad.open("rb") as f, OvaArchive(bad, fileobj=f, identity=identity(f), verified=True) as archive:
        with pytest.raises(UnsafeArchiveError, match="manifest does not match"):
            archive.verify_manifest()


def test_a_member_is_read_at_its_offset_in_the_file_not_through_tarfile(tmp_path, mocker):
    # tarfile's member stream copies every chunk twice more: half a second of CPU per GiB mid-upload.
    import tarfile

    ova = build_ova(tmp_path / "a.ova", disk_bytes=3 << 20)
    with tarfile.open(ova) as tar:
        disk = next(m for m in tar.getmembers() if m.name.endswith(".vmdk"))
        expected = tar.extractfile(disk).read()
    with OvaArchive(ova) as archive:
        extract = mocker.spy(tarfile.TarFile, "extractfile")
        stream, size = archive.open(disk.name)
        with stream:
            got = b"".join(iter(lambda: stream.read(1 << 20), b""))
        assert extract.call_count == 0
    assert size == len(expected) and got == expected
