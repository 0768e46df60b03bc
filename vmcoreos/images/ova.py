"""Reading an OVA (a tar) safely and streaming its disk without extracting it.

An Archive has one job: hand out a member's bytes as a stream with its size.
The tar is indexed once; every member is checked before anything is read, so
a hostile or broken OVA is refused before vSphere is touched.
"""

from __future__ import annotations

import posixpath
import re
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vmcoreos.errors import UnsafeArchiveError
from vmcoreos.images.verify import Check, DigestCheck

OVF_NS = "http://schemas.dmtf.org/ovf/envelope/1"
_MF_LINE = re.compile(r"^(SHA1|SHA256|SHA512)\((.+)\)\s*=\s*([0-9a-fA-F]+)\s*$")


@dataclass(frozen=True)
class OvfFile:
    id: str
    href: str
    size: int | None


@dataclass(frozen=True)
class Descriptor:
    text: str
    name: str
    files: tuple[OvfFile, ...]


class OvaArchive:
    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._size = self.path.stat().st_size
            self._tar = tarfile.open(self.path, mode="r:")
            self._members = {m.name: m for m in self._check_members(self._tar.getmembers())}
        except FileNotFoundError:
            raise UnsafeArchiveError(f"OVA {self.path} does not exist; check --ova") from None
        except tarfile.TarError as exc:
            if "unexpected end of data" in str(exc):
                raise UnsafeArchiveError(
                    f"{self.path.name} ends in the middle of a member; the OVA is truncated, download it again"
                ) from None
            raise UnsafeArchiveError(f"{self.path.name} is not a readable OVA (tar): {exc}") from None
        self.descriptor = self._read_descriptor()
        self.manifest = self._read_manifest()
        for f in self.descriptor.files:
            if f.href not in self._members:
                raise UnsafeArchiveError(
                    f"{self.path.name}: the OVF names {f.href!r} but the archive has no such member; the OVA is incomplete"
                )

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> "OvaArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_members(self, members: list[tarfile.TarInfo]) -> list[tarfile.TarInfo]:
        for m in members:
            name = m.name
            if name.startswith("/") or ".." in posixpath.normpath(name).split("/") or ".." in name.split("/"):
                raise UnsafeArchiveError(f"{self.path.name}: member {name!r} points outside the archive; refusing it")
            if not m.isreg():
                kind = "link" if (m.issym() or m.islnk()) else "device or special file" if not m.isdir() else "directory"
                raise UnsafeArchiveError(f"{self.path.name}: member {name!r} is a {kind}, not a file; refusing the OVA")
            if m.offset_data + m.size > self._size:
                raise UnsafeArchiveError(
                    f"{self.path.name}: member {name!r} claims {m.size} bytes but the archive ends first;"
                    " the OVA is truncated, download it again"
                )
        return members

    def names(self) -> list[str]:
        return list(self._members)

    def size(self, name: str) -> int:
        return self._members[name].size

    def open(self, name: str) -> tuple[BinaryIO, int]:
        member = self._members.get(name)
        if member is None:
            raise UnsafeArchiveError(f"{self.path.name}: no member {name!r}")
        stream = self._tar.extractfile(member)
        assert stream is not None
        return stream, member.size

    def _read_small(self, name: str, limit: int = 4 << 20) -> str:
        stream, size = self.open(name)
        if size > limit:
            raise UnsafeArchiveError(f"{self.path.name}: {name} is {size} bytes, too large for a descriptor")
        with stream:
            return stream.read().decode("utf-8")

    def _read_descriptor(self) -> Descriptor:
        ovfs = [n for n in self._members if n.lower().endswith(".ovf")]
        if not ovfs:
            raise UnsafeArchiveError(f"{self.path.name} has no .ovf descriptor; it is not a VMware OVA")
        text = self._read_small(ovfs[0])
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise UnsafeArchiveError(f"{self.path.name}: {ovfs[0]} is not valid XML ({exc})") from None
        files = []
        for el in root.iter(f"{{{OVF_NS}}}File"):
            size = el.get(f"{{{OVF_NS}}}size")
            files.append(OvfFile(el.get(f"{{{OVF_NS}}}id", ""), el.get(f"{{{OVF_NS}}}href", ""), int(size) if size else None))
        system = root.find(f"{{{OVF_NS}}}VirtualSystem")
        name = system.get(f"{{{OVF_NS}}}id", "") if system is not None else ""
        return Descriptor(text=text, name=name, files=tuple(files))

    def _read_manifest(self) -> dict[str, tuple[str, str]]:
        mfs = [n for n in self._members if n.lower().endswith(".mf")]
        if not mfs:
            return {}
        entries = {}
        for line in self._read_small(mfs[0]).splitlines():
            match = _MF_LINE.match(line.strip())
            if match:
                algo, name, digest = match.groups()
                entries[name] = (algo.lower(), digest.lower())
        return entries

    def manifest_check(self, name: str) -> Check | None:
        """A digest check for a member, to run on the bytes as they are uploaded."""
        entry = self.manifest.get(name)
        if entry is None:
            return None
        algo, digest = entry
        return _ManifestCheck(algo, digest, f"{self.path.name}: {name}")

    def verify_descriptor_against_manifest(self) -> None:
        for name, (algo, digest) in self.manifest.items():
            if name.lower().endswith(".ovf"):
                check = _ManifestCheck(algo, digest, f"{self.path.name}: {name}")
                check.update(self.descriptor.text.encode("utf-8"))
                check.finish()


class _ManifestCheck(DigestCheck):
    def finish(self) -> None:
        try:
            super().finish()
        except Exception as exc:
            raise UnsafeArchiveError(f"{exc.args[0].split(';')[0]}; the .mf manifest does not match, the OVA is corrupt") from None
