"""The OVA's .mf checked during the download's one pass (MemberDigestTap + OvaArchive.verify_manifest)."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from tests.harness.ova_builder import build_ova, profile, regular_member
from vmcoreos.errors import UnsafeArchiveError
from vmcoreos.images.archive.manifest import MemberDigestTap
from vmcoreos.images.archive.ova import OvaArchive


def stream(path, sizes=(1, 511, 513, 4096, (1 << 20) + 7)) -> MemberDigestTap:
    """Feed the file to a tap in awkward chunk sizes, cycling through `sizes`."""
    tap = MemberDigestTap(path.name)
    data = path.read_bytes()
    pos, i = 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        tap.update(data[pos : pos + n])
        pos, i = pos + n, i + 1
    tap.finish()
    return tap


def no_member_reads(monkeypatch):
    def refuse(self, name):
        raise AssertionError(f"{name} was read a second time")

    monkeypatch.setattr(OvaArchive, "open", refuse)


@pytest.mark.parametrize("distro", ["flatcar", "coreos"])
def test_vendor_layout_is_checked_without_a_second_read(tmp_path, monkeypatch, distro):
    ova = build_ova(tmp_path / "a.ova", distro=distro, disk_bytes=3 << 20)
    tap = stream(ova)
    disk = profile(distro).disk_name
    assert disk in tap.manifest
    with OvaArchive(ova) as archive:
        no_member_reads(monkeypatch)
        archive.verify_manifest(tap)


@pytest.mark.parametrize("defect", ["bad-sha1", "bad-sha256"])
def test_wrong_manifest_digest_is_caught_from_the_stream(tmp_path, monkeypatch, defect):
    ova = build_ova(tmp_path / "a.ova", defect=defect)
    tap = stream(ova)
    with OvaArchive(ova) as archive:
        no_member_reads(monkeypatch)
        with pytest.raises(UnsafeArchiveError, match=r"a.ova: .*_image.vmdk: SHA\d+ mismatch .*manifest does not match"):
            archive.verify_manifest(tap)


def test_manifest_after_the_disk_falls_back_to_reading_the_member(tmp_path):
    ova = build_ova(tmp_path / "a.ova", members=["ovf", "disk", "mf"])
    tap = stream(ova)
    with OvaArchive(ova) as archive:
        disk = archive.descriptor.files[0].href
        assert tap.check_for(disk, *archive.manifest[disk], archive._members[disk].offset_data, archive.size(disk)) is None
        archive.verify_manifest(tap)


def test_fcos_has_no_manifest(tmp_path):
    ova = build_ova(tmp_path / "a.ova", distro="fedora-coreos")
    tap = stream(ova)
    assert tap.manifest == {}
    with OvaArchive(ova) as archive:
        archive.verify_manifest(tap)


def test_the_tap_must_be_finished_first(tmp_path):
    ova = build_ova(tmp_path / "a.ova")
    tap = MemberDigestTap("a.ova")
    tap.update(ova.read_bytes())
    with OvaArchive(ova) as archive, pytest.raises(RuntimeError, match="finish"):
        archive.verify_manifest(tap)


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_long_names_and_offsets_agree_with_tarfile(tmp_path, fmt):
    long_name = ("d" * 60 + "/") * 2 + "disk.vmdk" if fmt != tarfile.USTAR_FORMAT else "d" * 90 + "/disk.vmdk"
    payload = bytes(range(256)) * 700
    digest = hashlib.sha256(payload).hexdigest()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in (("x.mf", f"SHA256({long_name})= {digest}\n".encode()), (long_name, payload)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = tmp_path / "t.tar"
    path.write_bytes(buf.getvalue())
    tap = stream(path, sizes=(700, 1, 512))
    with tarfile.open(path) as tar:
        member = tar.getmember(long_name)
    check = tap.check_for(long_name, "sha256", digest, member.offset_data, member.size)
    assert check is not None
    check.finish()


def test_duplicate_member_names_are_refused(tmp_path):
    ova = build_ova(tmp_path / "a.ova", extra_members=[regular_member(profile("flatcar").disk_name)])
    with pytest.raises(UnsafeArchiveError, match="appears twice"):
        OvaArchive(ova)
