"""The OVF descriptor is parsed once per archive, and everything reads that one parse."""

import xml.etree.ElementTree as ET

import pytest

from tests.harness.ova_builder import build_ova
from vmcoreos.errors import UnsafeArchiveError
from vmcoreos.images.archive import ovf
from vmcoreos.images.archive.ova import OvaArchive
from vmcoreos.vsphere import importer


def test_one_parse_serves_the_archive_the_fetch_check_the_room_check_and_the_importer(tmp_path, mocker):
    ova = build_ova(tmp_path / "a.ova", distro="fedora-coreos", disk_bytes=1 << 20, product_version="41.1")
    parses = mocker.spy(ET, "fromstring")
    from pyVmomi import vim

    session, placement = mocker.MagicMock(), mocker.MagicMock(network=vim.Network("network-7"), host=None)
    session.content.ovfManager.CreateImportSpec.return_value.error = None
    with OvaArchive(ova) as archive:
        assert archive.product_version() == "41.1"
        assert archive.disk_capacity() == 10 << 30
        importer.import_spec(session, archive, placement, "lab-template-x", {})
        importer.import_spec(session, archive, placement, "lab-template-x", {})
    assert parses.call_count == 1
    params = session.content.ovfManager.CreateImportSpec.call_args.args[3]
    assert [m.name for m in params.networkMapping] == ["VM Network"]


def test_the_parse_carries_disks_files_and_networks(tmp_path):
    with OvaArchive(build_ova(tmp_path / "a.ova", disk_bytes=1 << 20)) as archive:
        d = archive.descriptor
    assert [(f.id, f.size) for f in d.files] == [("file1", 1 << 20)]
    assert [(k.id, k.file_ref, k.capacity, k.units) for k in d.disks] == [("vmdisk1", "file1", str(12 << 30), "byte")]
    assert d.networks == ("VM Network",) and d.product_version is None


def _doc(disks: str) -> str:
    ns = ovf.OVF_NS
    return (f'<Envelope xmlns="{ns}" xmlns:ovf="{ns}"><References/><DiskSection>{disks}</DiskSection>'
            f'<NetworkSection><Network ovf:name="a"/><Network ovf:name="b"/></NetworkSection>'
            f'<VirtualSystem ovf:id="vm"/></Envelope>')


@pytest.mark.parametrize("disks,capacity", [
    ('<Disk ovf:diskId="1" ovf:capacity="8" ovf:capacityAllocationUnits="byte * 2^30"/>', 8 << 30),
    ('<Disk ovf:diskId="1" ovf:capacity="8" ovf:capacityAllocationUnits="byte * 2^30"/>'
     '<Disk ovf:diskId="2" ovf:capacity="1024"/>', (8 << 30) + 1024),
    ('', 0),
])
def test_capacities_are_summed_from_the_one_parse(disks, capacity):
    parsed = ovf.parse(_doc(disks), "a.ova", "a.ovf")
    assert parsed.capacity("a.ova") == capacity and parsed.networks == ("a", "b") and parsed.name == "vm"


def test_a_descriptor_that_is_not_xml_is_refused():
    with pytest.raises(UnsafeArchiveError, match="a.ova: a.ovf is not valid XML"):
        ovf.parse("<Envelope", "a.ova", "a.ovf")


def test_a_populated_size_that_is_not_a_number_is_ignored():
    parsed = ovf.parse(_doc('<Disk ovf:diskId="1" ovf:capacity="1" ovf:populatedSize="lots"/>'), "a.ova", "a.ovf")
    assert parsed.disks[0].populated_size is None
