"""Realistic test OVAs for vmcoreos's tests and demo.

An OVA is a plain tar. The layouts follow the vendors' build scripts
(coreos-facts.md section 5):

* Flatcar (flatcar/scripts ``_write_ova_bundle``) and CoreOS Container Linux
  (coreos/scripts, same code): GNU tar with the members
  ``<prefix>.ovf``, ``<prefix>.mf``, ``<prefix>_image.vmdk`` in that order,
  where prefix is ``flatcar_production_vmware_ova`` or
  ``coreos_production_vmware_ova``. The manifest has one
  ``SHA1(<file>)= <hex>`` line for the vmdk, then one for the ovf.
* Fedora CoreOS (coreos-assembler ``cmd-ova``): ustar with ``coreos.ovf``
  then ``disk.vmdk``; no manifest.

The OVF descriptors are modelled on the vendors' templates
(``build_library/template_vmware.ovf`` for Flatcar and CoreOS,
``src/vmware-template.xml`` for FCOS) and are accepted by govmomi's
simulator ``OvfManager.CreateImportSpec`` without errors.

The disk is typed streamOptimized. Its content starts with a plausible
streamOptimized sparse extent header ("KDMV", version 3, markers and
compressed-grain flags, grain directory at end) and embedded descriptor,
padded to 64 KiB, followed by deterministic pseudo-random bytes. It is
generated in 1 MiB chunks and streamed straight into the tar, so a 1 GiB
disk costs about 2 MiB of memory and a few seconds; the manifest digests are
computed during that single pass and patched into the manifest afterwards
(a tar header's checksum covers only the header, so member data can be
rewritten in place).

Public API::

    build_ova(dest, *, distro="flatcar", disk_bytes=4 MiB, vm_name=None,
              members=None, manifest=None, manifest_algo="SHA1",
              capacity_bytes=None, capacity_units="byte", seed=0,
              defect=None, extra_members=(), mtime=DEFAULT_MTIME) -> Path
    build_ovf_descriptor(*, distro="flatcar", disk_href=None,
              disk_size=4 MiB, capacity_bytes=None, capacity_units="byte",
              vm_name=None, network="VM Network", cpus=None, memory_mb=None,
              product_version=None) -> str
    iter_disk_chunks(size, *, capacity_bytes, disk_name, seed=0) -> Iterator[bytes]
    vmdk_stream_prefix(capacity_bytes, disk_name) -> bytes
    regular_member / symlink_member / hardlink_member / device_member / fifo_member
    PROFILES, DISTROS, DEFECTS

Defects (``build_ova(..., defect=NAME)``), each leaving everything else valid:

==================  =========================================================
``absolute-name``   extra regular member named ``/tmp/vmcoreos-test-absolute``
``dotdot-name``     extra regular member named ``../vmcoreos-test-dotdot``
``symlink``         extra symlink ``evil-symlink`` -> ``/etc/passwd``
``hardlink``        extra hard link ``evil-hardlink`` -> ``/etc/passwd``
``device``          extra character device ``evil-device`` (1, 3: /dev/null)
``no-ovf``          no ``.ovf`` member (and no ovf line in the ``.mf``)
``missing-disk``    the OVF references the vmdk but the tar lacks it (and the
                    ``.mf`` has no vmdk line)
``bad-sha1``        ``.mf`` in SHA1 format whose vmdk digest is wrong
``bad-sha256``      ``.mf`` in ``SHA256(<file>)= <hex>`` format whose vmdk
                    digest is wrong
``truncated``       the file ends in the middle of the vmdk data, so the vmdk
                    header claims more bytes than the archive holds (and the
                    end-of-archive blocks are missing)
==================  =========================================================

Extra members are appended after the standard ones, so a reader that stops
scanning once it has found the ovf and the disk will miss them.
"""

from __future__ import annotations

import hashlib
import random
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence
from xml.sax.saxutils import escape, quoteattr

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: Fixed member mtime (2025-03-07 00:00:00 UTC) so builds are reproducible.
DEFAULT_MTIME = 1741305600

CHUNK_SIZE = 1 * MiB
SECTOR = 512

VMDK_STREAM_FORMAT = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"

# --------------------------------------------------------------------------
# Distro profiles
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Prop:
    """One ``ProductSection`` property (all are userConfigurable strings)."""

    key: str
    label: str
    description: str = ""
    default: str = ""


@dataclass(frozen=True)
class DistroProfile:
    name: str
    ovf_name: str
    mf_name: str
    disk_name: str
    ova_name: str
    tar_format: int
    manifest: bool  # does the vendor ship a .mf?
    os_id: int
    os_type: str
    vmx: str
    cpus: int
    memory_mb: int
    firmware: str
    capacity_bytes: int
    product_info: str
    properties: tuple[Prop, ...]
    vm_name: str
    system_id: str | None = None  # VirtualSystem ovf:id when not the vm name
    product: tuple[str, str] | None = None  # (Product, Vendor) for FCOS
    product_version: str | None = None
    populated_size_is_file_size: bool = False
    legacy_hardware: bool = True  # IDE x2, video, CD-ROM, floppy


def _iface_props(n: int, role: str, extra_ip: bool, extra_route: bool, suffix: str) -> list[Prop]:
    def p(key: str, label: str, default: str = "") -> Prop:
        text = f"{label} for network interface {n}{suffix}"
        return Prop(f"guestinfo.interface.{n}.{key}", text, text, default)

    props = [
        p("name", "Name"),
        p("mac", "MAC"),
        p("dhcp", "DHCP support", "no"),
        p("role", "Role", role),
        p("ip.0.address", "Main IP"),
    ]
    if extra_ip:
        props.append(p("ip.1.address", "Additional IP"))
    props += [p("route.0.gateway", "Main route gateway"), p("route.0.destination", "Main route destination")]
    if extra_route:
        props += [
            p("route.1.gateway", "Additional route gateway"),
            p("route.1.destination", "Additional route destination"),
        ]
    return props


_CCI = " (only for coreos-cloudinit)"

FLATCAR_PROPERTIES: tuple[Prop, ...] = tuple(
    [
        Prop("guestinfo.hostname", "Hostname", "Hostname"),
        Prop(
            "guestinfo.ignition.config.data",
            "Ignition/coreos-cloudinit data",
            "Inline Ignition config or coreos-cloudinit data (cloud-config or script)",
        ),
        Prop(
            "guestinfo.ignition.config.data.encoding",
            "Ignition/coreos-cloudinit data encoding",
            "Encoding for Ignition config or coreos-cloudinit data (e.g., base64)",
        ),
        Prop(
            "guestinfo.ignition.config.url",
            "Ignition/coreos-cloudinit config url",
            "URL to Ignition config or coreos-cloudinit data (cloud-config or script)",
        ),
        Prop("guestinfo.dns.server.0", "Primary DNS" + _CCI, "Primary DNS" + _CCI),
        Prop("guestinfo.dns.server.1", "Secondary DNS" + _CCI, "Secondary DNS" + _CCI),
    ]
    + _iface_props(0, "public", extra_ip=True, extra_route=True, suffix=_CCI)
    + _iface_props(1, "private", extra_ip=False, extra_route=False, suffix=_CCI)
)

COREOS_PROPERTIES: tuple[Prop, ...] = tuple(
    [
        Prop("guestinfo.hostname", "Hostname", "Hostname"),
        Prop("guestinfo.coreos.config.data", "CoreOS config data", "Inline cloud-config data"),
        Prop("guestinfo.coreos.config.url", "CoreOS config url", "URL to cloud-config data"),
        Prop(
            "guestinfo.coreos.config.data.encoding",
            "CoreOS config data encoding",
            "Encoding for cloud-config data",
        ),
    ]
    + _iface_props(0, "public", extra_ip=False, extra_route=False, suffix="")
    + [
        Prop("guestinfo.dns.server.0", "Primary DNS", "Primary DNS"),
        Prop("guestinfo.dns.server.1", "Secondary DNS", "Secondary DNS"),
    ]
)

FCOS_PROPERTIES: tuple[Prop, ...] = (
    Prop("guestinfo.ignition.config.data", "Ignition config data", "Inline Ignition config data"),
    Prop(
        "guestinfo.ignition.config.data.encoding",
        "Ignition config data encoding",
        "Encoding for Ignition config data",
    ),
)

_FLATCAR_PREFIX = "flatcar_production_vmware_ova"
_COREOS_PREFIX = "coreos_production_vmware_ova"
_FCOS_VERSION = "33.20201201.3.0"  # the stream-metadata-go fixture's release

PROFILES: dict[str, DistroProfile] = {
    "flatcar": DistroProfile(
        name="flatcar",
        ovf_name=f"{_FLATCAR_PREFIX}.ovf",
        mf_name=f"{_FLATCAR_PREFIX}.mf",
        disk_name=f"{_FLATCAR_PREFIX}_image.vmdk",
        ova_name=f"{_FLATCAR_PREFIX}.ova",
        tar_format=tarfile.GNU_FORMAT,
        manifest=True,
        os_id=100,
        os_type="other3xLinux64Guest",
        vmx="vmx-13",
        cpus=2,
        memory_mb=2048,
        firmware="bios",
        capacity_bytes=12 * GiB,
        product_info="Flatcar Container Linux Virtual Appliance",
        properties=FLATCAR_PROPERTIES,
        vm_name=_FLATCAR_PREFIX,
    ),
    "coreos": DistroProfile(
        name="coreos",
        ovf_name=f"{_COREOS_PREFIX}.ovf",
        mf_name=f"{_COREOS_PREFIX}.mf",
        disk_name=f"{_COREOS_PREFIX}_image.vmdk",
        ova_name=f"{_COREOS_PREFIX}.ova",
        tar_format=tarfile.GNU_FORMAT,
        manifest=True,
        os_id=100,
        os_type="other26xLinux64Guest",
        vmx="vmx-11",
        cpus=2,
        memory_mb=1024,
        firmware="bios",
        capacity_bytes=8 * GiB + 512 * MiB,
        product_info="CoreOS Virtual Appliance",
        properties=COREOS_PROPERTIES,
        vm_name=_COREOS_PREFIX,
    ),
    "fedora-coreos": DistroProfile(
        name="fedora-coreos",
        ovf_name="coreos.ovf",
        mf_name="coreos.mf",  # only used when a manifest is forced
        disk_name="disk.vmdk",
        ova_name=f"fedora-coreos-{_FCOS_VERSION}-vmware.x86_64.ova",
        tar_format=tarfile.USTAR_FORMAT,
        manifest=False,
        os_id=100,
        os_type="fedora64Guest",
        vmx="vmx-17",
        cpus=2,
        memory_mb=4096,
        firmware="efi",
        capacity_bytes=10 * GiB,
        product_info="Information about the installed software",
        properties=FCOS_PROPERTIES,
        vm_name="fedora-coreos",
        system_id="image",
        product=("Fedora CoreOS", "Fedora Project"),
        product_version=_FCOS_VERSION,
        populated_size_is_file_size=True,
        legacy_hardware=False,
    ),
}
PROFILES["fcos"] = PROFILES["fedora-coreos"]

#: Canonical distro names (without aliases).
DISTROS: tuple[str, ...] = ("flatcar", "coreos", "fedora-coreos")


def profile(distro: str) -> DistroProfile:
    try:
        return PROFILES[distro]
    except KeyError:
        raise ValueError(f"unknown distro {distro!r}; expected one of {', '.join(DISTROS)}") from None


# --------------------------------------------------------------------------
# OVF descriptor
# --------------------------------------------------------------------------

_ENVELOPE_OPEN = (
    '<Envelope vmw:buildId="build-1474528"'
    ' xmlns="http://schemas.dmtf.org/ovf/envelope/1"'
    ' xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common"'
    ' xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"'
    ' xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"'
    ' xmlns:vmw="http://www.vmware.com/schema/ovf"'
    ' xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"'
    ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
)

_CAPACITY_MULTIPLIERS = {"byte": 1, "byte * 2^10": KiB, "byte * 2^20": MiB, "byte * 2^30": GiB}


def _config(key: str, value: str) -> str:
    return f'<vmw:Config ovf:required="false" vmw:key={quoteattr(key)} vmw:value={quoteattr(value)}/>'


def _item(rasd: Sequence[tuple[str, str]], *, optional: bool = False, configs: Sequence[tuple[str, str]] = ()) -> list[str]:
    head = '<Item ovf:required="false">' if optional else "<Item>"
    lines = [head]
    lines += [f"  <rasd:{tag}>{escape(str(value))}</rasd:{tag}>" for tag, value in rasd]
    lines += ["  " + _config(k, v) for k, v in configs]
    lines.append("</Item>")
    return lines


def _hardware_items(p: DistroProfile, cpus: int, memory_mb: int, network: str, nics: int = 1) -> list[str]:
    out: list[str] = []
    out += _item(
        [
            ("AllocationUnits", "hertz * 10^6"),
            ("Description", "Number of Virtual CPUs"),
            ("ElementName", f"{cpus} virtual CPU(s)"),
            ("InstanceID", "1"),
            ("ResourceType", "3"),
            ("VirtualQuantity", str(cpus)),
        ]
    )
    out += _item(
        [
            ("AllocationUnits", "byte * 2^20"),
            ("Description", "Memory Size"),
            ("ElementName", f"{memory_mb}MB of memory"),
            ("InstanceID", "2"),
            ("ResourceType", "4"),
            ("VirtualQuantity", str(memory_mb)),
        ]
    )
    out += _item(
        [
            ("Address", "0"),
            ("Description", "SCSI Controller"),
            ("ElementName", "SCSI Controller 0"),
            ("InstanceID", "3"),
            ("ResourceSubType", "VirtualSCSI"),
            ("ResourceType", "6"),
        ]
    )
    vmci = _item(
        [
            ("AutomaticAllocation", "false"),
            ("ElementName", "VirtualVMCIDevice"),
            ("InstanceID", "7"),
            ("ResourceSubType", "vmware.vmci"),
            ("ResourceType", "1"),
        ],
        optional=True,
        configs=[("allowUnrestrictedCommunication", "false")],
    )
    disk = _item(
        [
            ("AddressOnParent", "0"),
            ("ElementName", "Hard Disk 1"),
            ("HostResource", "ovf:/disk/vmdisk1"),
            ("InstanceID", "9"),
            ("Parent", "3"),
            ("ResourceType", "17"),
        ],
        configs=[("backing.writeThrough", "false")],
    )
    nic: list[str] = []
    for n in range(nics):  # the vendors' OVAs have one; more for tests of which NIC gets the address
        nic += _item(
            [
                ("AddressOnParent", str(7 + n)),
                ("AutomaticAllocation", "true"),
                ("Connection", network),
                ("Description", f'VmxNet3 ethernet adapter on "{network}"'),
                ("ElementName", f"Ethernet {n + 1}"),
                ("InstanceID", str(11 + 10 * n)),
                ("ResourceSubType", "VmxNet3"),
                ("ResourceType", "10"),
            ],
            configs=[("wakeOnLanEnabled", "true" if p.legacy_hardware else "false")],
        )
    if not p.legacy_hardware:  # FCOS: CPU, memory, SCSI, VMCI, disk, NIC
        return out + vmci + disk + nic

    for instance, address in (("4", "1"), ("5", "0")):
        out += _item(
            [
                ("Address", address),
                ("Description", "IDE Controller"),
                ("ElementName", f"VirtualIDEController {address}"),
                ("InstanceID", instance),
                ("ResourceType", "5"),
            ]
        )
    out += _item(
        [
            ("AutomaticAllocation", "false"),
            ("ElementName", "VirtualVideoCard"),
            ("InstanceID", "6"),
            ("ResourceType", "24"),
        ],
        optional=True,
        configs=[
            ("enable3DSupport", "false"),
            ("enableMPTSupport", "false"),
            ("use3dRenderer", "automatic"),
            ("useAutoDetect", "false"),
            ("videoRamSizeInKB", "4096"),
        ],
    )
    out += vmci
    out += _item(
        [
            ("AddressOnParent", "0"),
            ("AutomaticAllocation", "false"),
            ("ElementName", "CD-ROM 1"),
            ("InstanceID", "8"),
            ("Parent", "4"),
            ("ResourceSubType", "vmware.cdrom.remotepassthrough"),
            ("ResourceType", "15"),
        ],
        optional=True,
        configs=[("backing.exclusive", "false")],
    )
    out += disk
    out += _item(
        [
            ("AddressOnParent", "0"),
            ("AutomaticAllocation", "false"),
            ("Description", "Floppy Drive"),
            ("ElementName", "Floppy 1"),
            ("InstanceID", "10"),
            ("ResourceSubType", "vmware.floppy.remotedevice"),
            ("ResourceType", "14"),
        ],
        optional=True,
    )
    out += nic
    return out


def _hardware_configs(p: DistroProfile) -> list[tuple[str, str]]:
    if not p.legacy_hardware:
        return [
            ("firmware", p.firmware),
            ("bootOptions.efiSecureBootEnabled", "true"),
            ("tools.syncTimeWithHost", "false"),
        ]
    return [
        ("cpuHotAddEnabled", "true"),
        ("cpuHotRemoveEnabled", "true"),
        ("firmware", p.firmware),
        ("virtualICH7MPresent", "false"),
        ("virtualSMCPresent", "false"),
        ("memoryHotAddEnabled", "true"),
        ("nestedHVEnabled", "false"),
        ("powerOpInfo.powerOffType", "preset"),
        ("powerOpInfo.resetType", "preset"),
        ("powerOpInfo.standbyAction", "checkpoint"),
        ("powerOpInfo.suspendType", "preset"),
        ("tools.afterPowerOn", "true"),
        ("tools.afterResume", "true"),
        ("tools.beforeGuestShutdown", "true"),
        ("tools.beforeGuestStandby", "true"),
        ("tools.syncTimeWithHost", "false"),
        ("tools.toolsUpgradePolicy", "manual"),
    ]


def _product_section(p: DistroProfile, product_version: str | None) -> list[str]:
    lines = ['<ProductSection ovf:required="false">' if p.product is None else "<ProductSection>"]
    lines.append(f"  <Info>{escape(p.product_info)}</Info>")
    if p.product is not None:
        lines.append(f"  <Product>{escape(p.product[0])}</Product>")
        lines.append(f"  <Vendor>{escape(p.product[1])}</Vendor>")
        lines.append(f"  <Version>{escape(product_version or p.product_version or '')}</Version>")
    for prop in p.properties:
        lines += [
            f'  <Property ovf:userConfigurable="true" ovf:type="string" ovf:key={quoteattr(prop.key)}'
            f" ovf:value={quoteattr(prop.default)}>",
            f"    <Label>{escape(prop.label)}</Label>",
            f"    <Description>{escape(prop.description or prop.label)}</Description>",
            "  </Property>",
        ]
    lines.append("</ProductSection>")
    return lines


def build_ovf_descriptor(
    *,
    distro: str = "flatcar",
    disk_href: str | None = None,
    disk_size: int = 4 * MiB,
    capacity_bytes: int | None = None,
    capacity_units: str = "byte",
    vm_name: str | None = None,
    network: str = "VM Network",
    cpus: int | None = None,
    memory_mb: int | None = None,
    product_version: str | None = None,
    nics: int = 1,
) -> str:
    """Return an OVF 1.x descriptor (str, UTF-8 XML) for one of DISTROS.

    ``disk_href`` defaults to the distro's vmdk member name and ``disk_size``
    is its ``ovf:size`` (bytes of the vmdk file). ``capacity_bytes`` is the
    virtual disk size (default: the distro's, about what its disk layout
    gives); ``capacity_units`` is ``"byte"`` (what the vendors' templates
    use) or ``"byte * 2^20"``/``"byte * 2^30"``, in which case the capacity
    must be a whole number of those units.
    """
    p = profile(distro)
    href = disk_href if disk_href is not None else p.disk_name
    capacity = p.capacity_bytes if capacity_bytes is None else capacity_bytes
    try:
        unit = _CAPACITY_MULTIPLIERS[capacity_units]
    except KeyError:
        raise ValueError(f"capacity_units must be one of {sorted(_CAPACITY_MULTIPLIERS)}") from None
    if capacity % unit:
        raise ValueError(f"capacity {capacity} is not a multiple of {capacity_units}")
    name = vm_name or p.vm_name
    system_id = p.system_id or name
    populated = disk_size if p.populated_size_is_file_size else 0

    lines = ['<?xml version="1.0" encoding="UTF-8"?>', _ENVELOPE_OPEN]
    body: list[str] = [
        "<References>",
        f'  <File ovf:href={quoteattr(href)} ovf:id="file1" ovf:size="{disk_size}"/>',
        "</References>",
        "<DiskSection>",
        "  <Info>Virtual disk information</Info>",
        f'  <Disk ovf:capacity="{capacity // unit}" ovf:capacityAllocationUnits={quoteattr(capacity_units)}'
        f' ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="{VMDK_STREAM_FORMAT}"'
        f' ovf:populatedSize="{populated}"/>',
        "</DiskSection>",
        "<NetworkSection>",
        "  <Info>The list of logical networks</Info>",
        f"  <Network ovf:name={quoteattr(network)}>",
        f"    <Description>The {escape(network)} network</Description>",
        "  </Network>",
        "</NetworkSection>",
        f"<VirtualSystem ovf:id={quoteattr(system_id)}>",
        "  <Info>A virtual machine</Info>",
        f"  <Name>{escape(name)}</Name>",
    ]
    vs: list[str] = []
    product = _product_section(p, product_version)
    if p.product is None:  # Flatcar/CoreOS put the ProductSection first
        vs += product
    vs += [
        f'<OperatingSystemSection ovf:id="{p.os_id}" vmw:osType={quoteattr(p.os_type)}>',
        "  <Info>The kind of installed guest operating system</Info>",
        "</OperatingSystemSection>",
        '<VirtualHardwareSection ovf:transport="com.vmware.guestInfo">',
        "  <Info>Virtual hardware requirements</Info>",
        "  <System>",
        "    <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>",
        "    <vssd:InstanceID>0</vssd:InstanceID>",
        f"    <vssd:VirtualSystemIdentifier>{escape(system_id)}</vssd:VirtualSystemIdentifier>",
        f"    <vssd:VirtualSystemType>{p.vmx}</vssd:VirtualSystemType>",
        "  </System>",
    ]
    vs += ["  " + line for line in _hardware_items(p, cpus or p.cpus, memory_mb or p.memory_mb, network, nics)]
    vs += ["  " + _config(k, v) for k, v in _hardware_configs(p)]
    vs.append("</VirtualHardwareSection>")
    if p.product is not None:  # FCOS puts it last
        vs += product
    body += ["  " + line for line in vs]
    body.append("</VirtualSystem>")
    lines += ["  " + line for line in body]
    lines.append("</Envelope>")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Disk content
# --------------------------------------------------------------------------

_VMDK_FLAGS = 0x00030001  # valid newline test | compressed grains | markers
_GD_AT_END = 0xFFFFFFFFFFFFFFFF
_OVERHEAD_SECTORS = 128  # 64 KiB: header + descriptor, grain aligned


def _vmdk_descriptor(capacity_sectors: int, disk_name: str, cid: int) -> bytes:
    cylinders = min(65535, capacity_sectors // (255 * 63))
    text = (
        "# Disk DescriptorFile\n"
        "version=1\n"
        f"CID={cid:08x}\n"
        "parentCID=ffffffff\n"
        'createType="streamOptimized"\n'
        "\n"
        "# Extent description\n"
        f'RW {capacity_sectors} SPARSE "{disk_name}"\n'
        "\n"
        "# The Disk Data Base\n"
        "#DDB\n"
        "\n"
        'ddb.adapterType = "lsilogic"\n'
        f'ddb.geometry.cylinders = "{cylinders}"\n'
        'ddb.geometry.heads = "255"\n'
        'ddb.geometry.sectors = "63"\n'
        f'ddb.longContentID = "{cid:08x}{cid ^ 0x5A5A5A5A:08x}{cid ^ 0xA5A5A5A5:08x}{cid:08x}"\n'
        'ddb.toolsInstallType = "4"\n'
        'ddb.toolsVersion = "2147483647"\n'
        'ddb.virtualHWVersion = "4"\n'
    )
    return text.encode("ascii")


def vmdk_stream_prefix(capacity_bytes: int, disk_name: str, *, seed: int = 0) -> bytes:
    """First 64 KiB of a streamOptimized VMDK: sparse header + descriptor + zero padding."""
    capacity_sectors = -(-capacity_bytes // SECTOR)
    descriptor = _vmdk_descriptor(capacity_sectors, disk_name, cid=random.Random(seed).getrandbits(32))
    descriptor_sectors = -(-len(descriptor) // SECTOR)
    header = struct.pack(
        "<4sIIQQQQIQQQBccccH",
        b"KDMV",
        3,  # version (streamOptimized)
        _VMDK_FLAGS,
        capacity_sectors,
        128,  # grainSize (sectors): 64 KiB grains
        1,  # descriptorOffset
        descriptor_sectors,
        512,  # numGTEsPerGT
        0,  # rgdOffset
        _GD_AT_END,  # gdOffset: grain directory is in the footer
        _OVERHEAD_SECTORS,
        0,  # uncleanShutdown
        b"\n",
        b" ",
        b"\r",
        b"\n",
        1,  # compressAlgorithm: deflate
    )
    header += bytes(SECTOR - len(header))
    prefix = header + descriptor
    return prefix + bytes(_OVERHEAD_SECTORS * SECTOR - len(prefix))


def iter_disk_chunks(
    size: int, *, capacity_bytes: int, disk_name: str, seed: int = 0, chunk_size: int = CHUNK_SIZE
) -> Iterator[bytes]:
    """Yield exactly ``size`` bytes of deterministic VMDK-looking data.

    The data after the 64 KiB prefix is a seeded random 1 MiB block, rotated
    by a different offset for every chunk: cheap (a memcpy per chunk) yet no
    two chunks are equal (for up to 1 Ti chunks), so a reader that re-reads or
    re-sends one buffer produces a wrong digest.
    """
    prefix = vmdk_stream_prefix(capacity_bytes, disk_name, seed=seed)
    if size <= len(prefix):
        if size:
            yield prefix[:size]
        return
    yield prefix
    remaining = size - len(prefix)
    base = random.Random(seed).randbytes(chunk_size)
    step = 0x9E3779B1  # odd, so i*step mod 2^k is a permutation
    i = 0
    while remaining > 0:
        k = (i * step) % chunk_size
        chunk = base[k:] + base[:k]
        if remaining < chunk_size:
            chunk = chunk[:remaining]
        yield chunk
        remaining -= len(chunk)
        i += 1


# --------------------------------------------------------------------------
# Tar members and writer
# --------------------------------------------------------------------------


@dataclass
class Member:
    """A tar member to append verbatim (names are not sanitised)."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    linkname: str = ""
    mode: int = 0o644
    devmajor: int = 0
    devminor: int = 0


def regular_member(name: str, data: bytes = b"vmcoreos test member\n") -> Member:
    return Member(name, tarfile.REGTYPE, data)


def symlink_member(name: str, target: str) -> Member:
    return Member(name, tarfile.SYMTYPE, linkname=target, mode=0o777)


def hardlink_member(name: str, target: str) -> Member:
    return Member(name, tarfile.LNKTYPE, linkname=target)


def device_member(name: str, major: int = 1, minor: int = 3, *, block: bool = False) -> Member:
    return Member(name, tarfile.BLKTYPE if block else tarfile.CHRTYPE, mode=0o666, devmajor=major, devminor=minor)


def fifo_member(name: str) -> Member:
    return Member(name, tarfile.FIFOTYPE)


class _TarWriter:
    """Writes tar headers with tarfile.TarInfo.tobuf and streams data itself."""

    def __init__(self, f, fmt: int, mtime: int):
        self.f = f
        self.fmt = fmt
        self.mtime = mtime

    def _header(self, name: str, size: int, type_: bytes = tarfile.REGTYPE, **attrs) -> None:
        ti = tarfile.TarInfo(name)
        ti.size = size
        ti.type = type_
        ti.mtime = self.mtime
        ti.mode = attrs.pop("mode", 0o644)
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        for key, value in attrs.items():
            setattr(ti, key, value)
        self.f.write(ti.tobuf(self.fmt, "utf-8", "surrogateescape"))

    def _pad(self, size: int) -> None:
        if size % tarfile.BLOCKSIZE:
            self.f.write(bytes(tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE))

    def add_bytes(self, name: str, data: bytes) -> int:
        """Add a regular file; return the offset of its data."""
        self._header(name, len(data))
        offset = self.f.tell()
        self.f.write(data)
        self._pad(len(data))
        return offset

    def add_stream(self, name: str, size: int, chunks: Iterable[bytes]) -> int:
        self._header(name, size)
        offset = self.f.tell()
        written = 0
        for chunk in chunks:
            self.f.write(chunk)
            written += len(chunk)
        if written != size:
            raise AssertionError(f"{name}: generated {written} bytes, header says {size}")
        self._pad(size)
        return offset

    def add_member(self, m: Member) -> None:
        size = len(m.data) if m.type in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
        self._header(
            m.name, size, m.type, mode=m.mode, linkname=m.linkname, devmajor=m.devmajor, devminor=m.devminor
        )
        self.f.write(m.data[:size])
        self._pad(size)

    def close(self) -> None:
        self.f.write(bytes(2 * tarfile.BLOCKSIZE))
        end = self.f.tell()
        if end % tarfile.RECORDSIZE:  # pad to a full record, like tar(1)
            self.f.write(bytes(tarfile.RECORDSIZE - end % tarfile.RECORDSIZE))


# --------------------------------------------------------------------------
# The OVA
# --------------------------------------------------------------------------

DEFECTS: tuple[str, ...] = (
    "absolute-name",
    "dotdot-name",
    "symlink",
    "hardlink",
    "device",
    "no-ovf",
    "missing-disk",
    "bad-sha1",
    "bad-sha256",
    "truncated",
)

_DEFECT_MEMBERS = {
    "absolute-name": lambda: regular_member("/tmp/vmcoreos-test-absolute"),
    "dotdot-name": lambda: regular_member("../vmcoreos-test-dotdot"),
    "symlink": lambda: symlink_member("evil-symlink", "/etc/passwd"),
    "hardlink": lambda: hardlink_member("evil-hardlink", "/etc/passwd"),
    "device": lambda: device_member("evil-device", 1, 3),
}

_MANIFEST_ALGOS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256}


def _manifest_text(algo: str, entries: Sequence[tuple[str, str]]) -> bytes:
    return "".join(f"{algo}({name})= {hexdigest}\n" for name, hexdigest in entries).encode("ascii")


def _corrupt(hexdigest: str) -> str:
    """Same length, different digest: flip the last hex digit."""
    return hexdigest[:-1] + ("0" if hexdigest[-1] != "0" else "1")


def build_ova(
    dest: Path | str,
    *,
    distro: str = "flatcar",
    disk_bytes: int = 4 * MiB,
    vm_name: str | None = None,
    members: Sequence[str] | None = None,
    manifest: bool | None = None,
    manifest_algo: str = "SHA1",
    capacity_bytes: int | None = None,
    capacity_units: str = "byte",
    seed: int = 0,
    defect: str | None = None,
    extra_members: Sequence[Member] = (),
    mtime: int = DEFAULT_MTIME,
    product_version: str | None = None,
    nics: int = 1,
) -> Path:
    """Write a test OVA and return its path.

    ``dest`` is the file to write, or an existing directory, in which case the
    vendor's OVA file name is used inside it.

    * ``disk_bytes``: size of the vmdk member (the OVF's ``ovf:size``).
    * ``members``: which standard members to write, in order, by role:
      ``"ovf"``, ``"mf"``, ``"disk"``. Default: the vendor's order
      (``ovf, mf, disk``; FCOS ``ovf, disk``). Use it to test ordering.
    * ``manifest``: include the ``.mf``; default: as the vendor does (Flatcar
      and CoreOS yes, FCOS no). ``manifest_algo`` is ``"SHA1"`` (vendor) or
      ``"SHA256"``.
    * ``seed``: changes the disk content (and VMDK CID) deterministically.
    * ``defect``: one of DEFECTS (see the module docstring).
    * ``extra_members``: appended after the standard members, verbatim.
    """
    p = profile(distro)
    if defect is not None and defect not in DEFECTS:
        raise ValueError(f"unknown defect {defect!r}; expected one of {', '.join(DEFECTS)}")
    if manifest_algo not in _MANIFEST_ALGOS:
        raise ValueError(f"manifest_algo must be one of {sorted(_MANIFEST_ALGOS)}")
    if defect == "bad-sha1":
        manifest, manifest_algo = True, "SHA1"
    elif defect == "bad-sha256":
        manifest, manifest_algo = True, "SHA256"
    if manifest is None:
        manifest = p.manifest

    order = list(members) if members is not None else (["ovf", "mf", "disk"] if manifest else ["ovf", "disk"])
    unknown = set(order) - {"ovf", "mf", "disk"}
    if unknown:
        raise ValueError(f"members: unknown roles {sorted(unknown)}")
    if not manifest and "mf" in order:
        order.remove("mf")
    if defect == "no-ovf":
        order = [r for r in order if r != "ovf"]
    if defect == "missing-disk":
        order = [r for r in order if r != "disk"]
    if defect == "truncated" and ("disk" not in order or disk_bytes < 2):
        raise ValueError("defect 'truncated' needs a disk of at least 2 bytes")

    capacity = p.capacity_bytes if capacity_bytes is None else capacity_bytes
    ovf = build_ovf_descriptor(
        distro=distro,
        disk_size=disk_bytes,
        capacity_bytes=capacity,
        capacity_units=capacity_units,
        vm_name=vm_name,
        product_version=product_version,
        nics=nics,
    ).encode("utf-8")

    dest = Path(dest)
    if dest.is_dir():
        dest = dest / p.ova_name

    hasher = _MANIFEST_ALGOS[manifest_algo]
    # vmdk line first, then ovf: flatcar/scripts _write_ova_bundle.
    mf_names = [n for role, n in (("disk", p.disk_name), ("ovf", p.ovf_name)) if role in order]
    placeholder = _manifest_text(manifest_algo, [(n, "0" * hasher().digest_size * 2) for n in mf_names])
    digests: dict[str, str] = {p.ovf_name: hasher(ovf).hexdigest()}
    mf_offset: int | None = None
    disk_offset: int | None = None

    extras = list(extra_members)
    if defect in _DEFECT_MEMBERS:
        extras.append(_DEFECT_MEMBERS[defect]())

    with open(dest, "wb") as f:
        tar = _TarWriter(f, p.tar_format, mtime)
        for role in order:
            if role == "ovf":
                tar.add_bytes(p.ovf_name, ovf)
            elif role == "mf":
                mf_offset = tar.add_bytes(p.mf_name, placeholder)
            else:
                h = hasher()

                def hashed(chunks: Iterable[bytes]) -> Iterator[bytes]:
                    for chunk in chunks:
                        h.update(chunk)
                        yield chunk

                chunks = iter_disk_chunks(disk_bytes, capacity_bytes=capacity, disk_name=p.disk_name, seed=seed)
                disk_offset = tar.add_stream(p.disk_name, disk_bytes, hashed(chunks))
                digests[p.disk_name] = h.hexdigest()
        for m in extras:
            tar.add_member(m)
        tar.close()

        if mf_offset is not None:
            entries = [(n, digests[n]) for n in mf_names]
            if defect in ("bad-sha1", "bad-sha256"):
                entries = [(n, _corrupt(d) if n == p.disk_name else d) for n, d in entries]
            text = _manifest_text(manifest_algo, entries)
            assert len(text) == len(placeholder)
            f.seek(mf_offset)
            f.write(text)

        if defect == "truncated":
            assert disk_offset is not None
            f.truncate(disk_offset + disk_bytes // 2)
    return dest
