"""The OVA's .mf manifest: its lines, a digest check per member, and digests taken in the download's one pass."""

from __future__ import annotations

import re
import tarfile

from vmcoreos.errors import UnsafeArchiveError
from vmcoreos.images.trust.digests import Check, DigestCheck

MF_LINE = re.compile(r"(SHA1|SHA256|SHA512)\((.+)\)\s*=\s*([0-9a-fA-F]+)\s*")


def parse_manifest(text: str) -> dict[str, tuple[str, str]]:
    """member name -> (algorithm, hex digest); lines that are not digests are skipped."""
    entries = {}
    for line in text.splitlines():
        match = MF_LINE.fullmatch(line.strip())
        if match:
            algo, name, digest = match.groups()
            entries[name] = (algo.lower(), digest.lower())
    return entries


class ManifestCheck(DigestCheck):
    def finish(self) -> None:
        try:
            super().finish()
        except Exception as exc:
            raise UnsafeArchiveError(f"{exc.args[0].split(';')[0]}; the .mf manifest does not match, the OVA is corrupt") from None


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
        self._digested: dict[str, tuple[int, int, str, str, ManifestCheck]] = {}
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
                check = ManifestCheck(algo, digest, f"{self.label}: {name}")
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
            self.manifest.update(parse_manifest(bytes(captured).decode("utf-8", "replace")))

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

    def check_for(self, name: str, algo: str, digest: str, offset: int, size: int) -> "ManifestCheck | None":
        """The finished digest of that exact member, or None if the stream did not cover it."""
        if not self._finished:
            raise RuntimeError("MemberDigestTap.finish() must be called after the last byte")
        entry = self._digested.get(name)
        if entry is None or entry[:4] != (offset, size, algo, digest):
            return None
        return entry[4]
