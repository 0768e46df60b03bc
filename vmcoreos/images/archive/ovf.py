"""The OVF descriptor, parsed once: files, disks and their capacities, networks, product version.

Everything else reads the `Ovf` value an archive carries, so the XML is
parsed once per archive (the importer used to parse it again for networks,
and the archive once more each for disk capacity and product version).
Capacities are kept as the descriptor writes them and sized on demand
(Ovf.capacity), bounded, so a hostile descriptor is refused when its disks
are sized, as before.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from typing import Callable

from vmcoreos.errors import UnsafeArchiveError

OVF_NS = "http://schemas.dmtf.org/ovf/envelope/1"
_NS = f"{{{OVF_NS}}}"
# No real disk comes near this (1 EiB); it only stops a hostile descriptor's 9^999999999 from hanging us.
MAX_ALLOCATION_UNIT = 1 << 60
_UNIT_TERM = re.compile(r"([0-9]{1,19})(?:\^([0-9]{1,3}))?")


@dataclass(frozen=True)
class OvfFile:
    id: str
    href: str
    size: int | None


@dataclass(frozen=True)
class OvfDisk:
    id: str
    file_ref: str
    capacity: str  # as written: a count of allocation units
    units: str  # e.g. "byte * 2^30"
    populated_size: int | None


@dataclass(frozen=True)
class Ovf:
    text: str
    name: str  # the VirtualSystem's id
    files: tuple[OvfFile, ...]
    disks: tuple[OvfDisk, ...] = ()
    networks: tuple[str, ...] = ()
    product_version: str | None = None  # the ProductSection's Version (FCOS writes its release there)

    def capacity(self, label: str) -> int:
        """Bytes the disks can grow to (capacity x allocation units), refusing absurd values; label names the OVA."""
        total = 0
        for disk in self.disks:
            raw = (disk.capacity or "0").strip()
            if not raw.isdigit() or len(raw) > 19:
                raise UnsafeArchiveError(f"{label}: a disk capacity of {raw[:40]!r} is not a size; refusing the OVA")
            total += int(raw) * allocation_units(disk.units)
            if total > MAX_ALLOCATION_UNIT:
                raise UnsafeArchiveError(f"{label}: its disks claim more than {MAX_ALLOCATION_UNIT} bytes; refusing the OVA")
        return total

    def populated(self, label: str, file_size: Callable[[str], int | None] | None = None) -> int:
        """Bytes the disks hold once imported thin: populatedSize, else the disk file's size (a compressed
        streamOptimized file is smaller than what it fills, so this errs low only without populatedSize),
        else the capacity; never more than the capacity. file_size(href): a member's size, for files the
        descriptor gives none."""
        files = {f.id: f for f in self.files}
        total = 0
        for disk in self.disks:
            capacity = replace(self, disks=(disk,)).capacity(label)
            # 0 means unknown, not empty: Flatcar's OVF template writes a literal 0 (coreos-facts §8).
            held = disk.populated_size or None
            if held is None and disk.file_ref in files:
                file = files[disk.file_ref]
                held = file.size if file.size is not None or file_size is None else file_size(file.href)
            total += capacity if held is None else min(capacity, held)
        return total


def parse(text: str, label: str, where: str) -> Ovf:
    """The one parse of a descriptor; label names the OVA and where the .ovf member, for messages."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise UnsafeArchiveError(f"{label}: {where} is not valid XML ({exc})") from None
    files = tuple(
        OvfFile(el.get(f"{_NS}id", ""), el.get(f"{_NS}href", ""), _int(el.get(f"{_NS}size")))
        for el in root.iter(f"{_NS}File")
    )
    disks = tuple(
        OvfDisk(el.get(f"{_NS}diskId", ""), el.get(f"{_NS}fileRef", ""), el.get(f"{_NS}capacity", "0") or "0",
                el.get(f"{_NS}capacityAllocationUnits", "byte"), _count(el.get(f"{_NS}populatedSize")))
        for el in root.iter(f"{_NS}Disk")
    )
    networks = tuple(n.get(f"{_NS}name") for n in root.iter(f"{_NS}Network") if n.get(f"{_NS}name"))
    system = root.find(f"{_NS}VirtualSystem")
    return Ovf(text=text, name=system.get(f"{_NS}id", "") if system is not None else "", files=files, disks=disks,
               networks=networks, product_version=_product_version(root))


def _product_version(root: ET.Element) -> str | None:
    for section in root.iter(f"{_NS}ProductSection"):
        version = section.find(f"{_NS}Version")
        if version is not None and (version.text or "").strip():
            return version.text.strip()
    return None


def _int(text: str | None) -> int | None:
    """A size attribute; None when absent (file sizes are optional in OVF)."""
    return int(text) if text else None


def _count(text: str | None) -> int | None:
    """populatedSize is informational (nothing is refused on it): None unless it is a plain number."""
    return int(text) if text and text.strip().isdigit() and len(text.strip()) <= 19 else None


def allocation_units(text: str) -> int:
    """'byte', 'byte * 2^30', 'byte * 1024' (DMTF programmatic units, as OVF writers use them), bounded."""
    terms = text.replace(" ", "").lower().split("*")
    if terms[0] not in ("byte", "bytes", ""):
        raise UnsafeArchiveError(f"the OVF's allocation unit {text[:60]!r} is not in bytes; refusing the OVA")
    factor = 1
    for term in terms[1:]:
        match = _UNIT_TERM.fullmatch(term)
        if not match:
            raise UnsafeArchiveError(f"the OVF's allocation unit {text[:60]!r} is not like 'byte * 2^20'; refusing the OVA")
        base, exp = int(match.group(1)), int(match.group(2) or 1)
        # Multiply step by step and stop past the bound, so no huge power is ever computed.
        for _ in range(exp):
            factor *= base
            if factor > MAX_ALLOCATION_UNIT:
                raise UnsafeArchiveError(
                    f"the OVF's allocation unit {text[:60]!r} exceeds {MAX_ALLOCATION_UNIT} bytes; refusing the OVA"
                )
            if base <= 1:
                break
    return factor
