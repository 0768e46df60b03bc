"""Reading an OVA (a tar) safely and streaming its disk without extracting it.

An Archive has one job: hand out a member's bytes as a stream with its size.
The tar is indexed once; every member is checked before anything is read, so
a hostile or broken OVA is refused before vSphere is touched.
"""

from __future__ import annotations

import os
import posixpath
import re
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from vmcoreos.errors import UnsafeArchiveError, VerificationError
from vmcoreos.images.stream import pump
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
    def __init__(self, path: Path, *, name: str | None = None, fileobj: BinaryIO | None = None,
                 identity: tuple[int, ...] | None = None):
        """name: what messages call the file (a download is checked as <name>.part, before its rename).

        fileobj: read this open file (the verified descriptor) instead of opening path; identity: its
        fstat identity at verification, which check_unchanged() holds it to.
        """
        self.path = Path(path)
        self.name = name or self.path.name
        self._tar = None
        self._file = fileobj
        self._identity = identity
        try:
            if fileobj is not None:
                fileobj.seek(0)
                self._size = os.fstat(fileobj.fileno()).st_size
                self._tar = tarfile.open(fileobj=fileobj, mode="r:")
            else:
                self._size = self.path.stat().st_size
                self._tar = tarfile.open(self.path, mode="r:")
            self._members = {m.name: m for m in self._check_members(self._tar.getmembers())}
            self.descriptor = self._read_descriptor()
            self.manifest = self._read_manifest()
            for f in self.descriptor.files:
                if f.href not in self._members:
                    raise UnsafeArchiveError(
                        f"{self.name}: the OVF names {f.href!r} but the archive has no such member; the OVA is incomplete"
                    )
        except FileNotFoundError:
            self.close()
            raise UnsafeArchiveError(f"OVA {self.path} does not exist; check --ova") from None
        except tarfile.TarError as exc:
            self.close()
            if "unexpected end of data" in str(exc):
                raise UnsafeArchiveError(
                    f"{self.name} ends in the middle of a member; the OVA is truncated, download it again"
                ) from None
            raise UnsafeArchiveError(f"{self.name} is not a readable OVA (tar): {exc}") from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()  # leaves a fileobj it was given open: the image owns it

    def check_unchanged(self) -> None:
        """Refuse if the verified file was written to since it was verified (before an upload completes)."""
        if self._file is None or self._identity is None:
            return
        from vmcoreos.images.source import identity

        if identity(self._file) != self._identity:
            raise VerificationError(
                f"{self.name} was written to, replaced or renamed after it was verified; whatever else"
                " touches it must stop, then run again"
            )

    def product_version(self) -> str | None:
        """The OVF ProductSection's Version (FCOS writes its release there; Flatcar and CoreOS leave it out)."""
        root = ET.fromstring(self.descriptor.text)
        for section in root.iter(f"{{{OVF_NS}}}ProductSection"):
            version = section.find(f"{{{OVF_NS}}}Version")
            if version is not None and (version.text or "").strip():
                return version.text.strip()
        return None

    def __enter__(self) -> "OvaArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_members(self, members: list[tarfile.TarInfo]) -> list[tarfile.TarInfo]:
        seen = set()
        for m in members:
            name = m.name
            if name in seen:
                # tar readers disagree on which copy wins; a digest could vouch for the other one.
                raise UnsafeArchiveError(f"{self.name}: member {name!r} appears twice; refusing the OVA")
            seen.add(name)
            if name.startswith("/") or ".." in posixpath.normpath(name).split("/") or ".." in name.split("/"):
                raise UnsafeArchiveError(f"{self.name}: member {name!r} points outside the archive; refusing it")
            if not m.isreg():
                kind = "link" if (m.issym() or m.islnk()) else "device or special file" if not m.isdir() else "directory"
                raise UnsafeArchiveError(f"{self.name}: member {name!r} is a {kind}, not a file; refusing the OVA")
            if m.offset_data + m.size > self._size:
                raise UnsafeArchiveError(
                    f"{self.name}: member {name!r} claims {m.size} bytes but the archive ends first;"
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
            raise UnsafeArchiveError(f"{self.name}: no member {name!r}")
        stream = self._tar.extractfile(member)
        assert stream is not None
        return stream, member.size

    def _read_small(self, name: str, limit: int = 4 << 20) -> str:
        stream, size = self.open(name)
        if size > limit:
            raise UnsafeArchiveError(f"{self.name}: {name} is {size} bytes, too large for a descriptor")
        with stream:
            try:
                return stream.read().decode("utf-8")
            except UnicodeDecodeError:
                raise UnsafeArchiveError(f"{self.name}: {name} is not UTF-8 text; it is not an OVF descriptor or manifest") from None

    def _read_descriptor(self) -> Descriptor:
        ovfs = [n for n in self._members if n.lower().endswith(".ovf")]
        if not ovfs:
            raise UnsafeArchiveError(f"{self.name} has no .ovf descriptor; it is not a VMware OVA")
        text = self._read_small(ovfs[0])
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise UnsafeArchiveError(f"{self.name}: {ovfs[0]} is not valid XML ({exc})") from None
        files = []
        for el in root.iter(f"{{{OVF_NS}}}File"):
            size = el.get(f"{{{OVF_NS}}}size")
            files.append(OvfFile(el.get(f"{{{OVF_NS}}}id", ""), el.get(f"{{{OVF_NS}}}href", ""), int(size) if size else None))
        system = root.find(f"{{{OVF_NS}}}VirtualSystem")
        name = system.get(f"{{{OVF_NS}}}id", "") if system is not None else ""
        return Descriptor(text=text, name=name, files=tuple(files))

    def disk_capacity(self) -> int:
        """Bytes the OVF's disks can grow to (DiskSection capacity x its allocation units)."""
        root = ET.fromstring(self.descriptor.text)
        total = 0
        for disk in root.iter(f"{{{OVF_NS}}}Disk"):
            raw = (disk.get(f"{{{OVF_NS}}}capacity", "0") or "0").strip()
            if not raw.isdigit() or len(raw) > 19:
                raise UnsafeArchiveError(f"{self.name}: a disk capacity of {raw[:40]!r} is not a size; refusing the OVA")
            total += int(raw) * _allocation_units(disk.get(f"{{{OVF_NS}}}capacityAllocationUnits", "byte"))
            if total > MAX_ALLOCATION_UNIT:
                raise UnsafeArchiveError(f"{self.name}: its disks claim more than {MAX_ALLOCATION_UNIT} bytes; refusing the OVA")
        return total

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
        return _ManifestCheck(algo, digest, f"{self.name}: {name}")

    def verify_descriptor_against_manifest(self) -> None:
        for name, (algo, digest) in self.manifest.items():
            if name.lower().endswith(".ovf"):
                check = _ManifestCheck(algo, digest, f"{self.name}: {name}")
                check.update(self.descriptor.text.encode("utf-8"))
                check.finish()


    def verify_manifest(self, streamed: "MemberDigestTap | None" = None) -> None:
        """Check the descriptor and every member the .mf lists.

        Members a download already digested in its one pass (streamed) are not
        read again; any other listed member is read from the file here.
        """
        self.verify_descriptor_against_manifest()
        for name, (algo, digest) in self.manifest.items():
            if name.lower().endswith(".ovf"):
                continue
            member = self._members.get(name)
            if member is None:
                raise UnsafeArchiveError(
                    f"{self.name}: the .mf lists {name!r} but the archive has no such member; the OVA is incomplete"
                )
            check = streamed.check_for(name, algo, digest, member.offset_data, member.size) if streamed else None
            if check is None:
                check = self.manifest_check(name)
                stream, _ = self.open(name)
                with stream:
                    pump(stream, [check])
            check.finish()


class MemberDigestTap(Check):
    """Digests the members the .mf lists as the tar streams past: the manifest check rides the one pass.

    Only members after the .mf can be digested here (the vendors write ovf,
    mf, disk); OvaArchive.verify_manifest reads any other from the file. Each
    digest is kept with the member's data offset and size, and is used only
    if tarfile finds the same member there, so a header this parser reads
    differently from tarfile cannot vouch for other bytes.
    """

    def __init__(self, label: str):
        self.label = label
        self.manifest: dict[str, tuple[str, str]] = {}
        self._digested: dict[str, tuple[int, int, str, str, _ManifestCheck]] = {}
        self._pos = 0  # bytes seen so far
        self._header = bytearray()
        self._remaining = 0  # data bytes left in the current member
        self._padding = 0
        self._member: tuple | None = None  # (name, offset, size, algo, digest, check) being digested
        self._capture: bytearray | None = None  # data of a .mf, GNU long name or pax header
        self._capture_kind = ""
        self._next_name: str | None = None
        self._next_size: int | None = None
        self._stopped = False  # end of archive, or something only tarfile should judge
        self._finished = False

    def update(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        pos, end = 0, len(view)
        while pos < end and not self._stopped:
            if self._remaining:
                n = min(self._remaining, end - pos)
                piece = view[pos : pos + n]
                if self._member is not None:
                    self._member[5].update(piece)
                if self._capture is not None:
                    self._capture += piece
                self._remaining -= n
                pos += n
                if not self._remaining:
                    self._end_member()
            elif self._padding:
                n = min(self._padding, end - pos)
                self._padding -= n
                pos += n
            else:
                n = min(tarfile.BLOCKSIZE - len(self._header), end - pos)
                self._header += view[pos : pos + n]
                pos += n
                if len(self._header) == tarfile.BLOCKSIZE:
                    self._start_member(bytes(self._header), self._pos + pos)
                    self._header.clear()
        self._pos += end

    def _start_member(self, block: bytes, data_offset: int) -> None:
        if block == bytes(tarfile.BLOCKSIZE):
            self._stopped = True
            return
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError:
            self._stopped = True
            return
        kind, size = info.type, info.size
        if kind in (tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE):
            if size > 1 << 20:
                self._stopped = True
                return
            self._capture, self._capture_kind = bytearray(), "name" if kind == tarfile.GNUTYPE_LONGNAME else "pax"
        elif kind == tarfile.GNUTYPE_SPARSE:
            self._stopped = True  # sparse maps are not followed; tarfile judges such an archive
            return
        elif kind in tarfile.REGULAR_TYPES:
            name = self._next_name if self._next_name is not None else info.name
            size = self._next_size if self._next_size is not None else size
            self._next_name = self._next_size = None
            if name.lower().endswith(".mf") and not self.manifest and size <= 4 << 20:
                self._capture, self._capture_kind = bytearray(), "mf"
            elif name in self.manifest:
                algo, digest = self.manifest[name]
                check = _ManifestCheck(algo, digest, f"{self.label}: {name}")
                self._member = (name, data_offset, size, algo, digest, check)
        elif kind in tarfile.SUPPORTED_TYPES and kind != tarfile.GNUTYPE_LONGLINK:
            self._next_name = self._next_size = None
            size = 0  # links, directories, devices: no data follows them
        # Anything else (a long link name, a global pax header, an unknown type): its data is skipped.
        self._remaining = size
        self._padding = -size % tarfile.BLOCKSIZE
        if not size:
            self._end_member()

    def _end_member(self) -> None:
        if self._member is not None:
            name, *rest = self._member
            self._digested[name] = tuple(rest)
            self._member = None
        captured, kind = self._capture, self._capture_kind
        self._capture, self._capture_kind = None, ""
        if captured is None:
            return
        if kind == "name":
            self._next_name = bytes(captured).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif kind == "pax":
            self._apply_pax(bytes(captured))
        else:
            for line in bytes(captured).decode("utf-8", "replace").splitlines():
                match = _MF_LINE.match(line.strip())
                if match:
                    algo, name, digest = match.groups()
                    self.manifest[name] = (algo.lower(), digest.lower())

    def _apply_pax(self, data: bytes) -> None:
        """Records "<length> <keyword>=<value>\\n"; path and size override the next header's."""
        pos = 0
        while pos < len(data):
            space = data.find(b" ", pos)
            length = data[pos:space]
            if space < 0 or not length.isdigit() or int(length) <= space - pos + 1:
                self._stopped = True
                return
            record = data[space + 1 : pos + int(length)].rstrip(b"\n")
            pos += int(length)
            keyword, _, value = record.partition(b"=")
            if keyword == b"path":
                self._next_name = value.decode("utf-8", "surrogateescape")
            elif keyword == b"size":
                if not value.isdigit():
                    self._stopped = True
                    return
                self._next_size = int(value)

    def finish(self) -> None:
        """Marks the end of the stream; OvaArchive.verify_manifest judges the digests with tarfile's view."""
        self._finished = True

    def check_for(self, name: str, algo: str, digest: str, offset: int, size: int) -> "_ManifestCheck | None":
        """The finished digest of that exact member, or None if the stream did not cover it."""
        if not self._finished:
            raise RuntimeError("MemberDigestTap.finish() must be called after the last byte")
        entry = self._digested.get(name)
        if entry is None or entry[:4] != (offset, size, algo, digest):
            return None
        return entry[4]


class _ManifestCheck(DigestCheck):
    def finish(self) -> None:
        try:
            super().finish()
        except Exception as exc:
            raise UnsafeArchiveError(f"{exc.args[0].split(';')[0]}; the .mf manifest does not match, the OVA is corrupt") from None


# No real disk comes near this (1 EiB); it only stops a hostile descriptor's 9^999999999 from hanging us.
MAX_ALLOCATION_UNIT = 1 << 60
_UNIT_TERM = re.compile(r"^(\d{1,19})(?:\^(\d{1,3}))?$")


def _allocation_units(text: str) -> int:
    """'byte', 'byte * 2^30', 'byte * 1024' (DMTF programmatic units, as OVF writers use them), bounded."""
    terms = text.replace(" ", "").lower().split("*")
    if terms[0] not in ("byte", "bytes", ""):
        raise UnsafeArchiveError(f"the OVF's allocation unit {text[:60]!r} is not in bytes; refusing the OVA")
    factor = 1
    for term in terms[1:]:
        match = _UNIT_TERM.match(term)
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
