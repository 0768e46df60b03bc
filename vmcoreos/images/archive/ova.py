"""Reading an OVA (a tar) safely and streaming its disk without extracting it.

An Archive has one job: hand out a member's bytes as a stream with its size,
and carry the OVF descriptor it was opened with, parsed once (images/archive/ovf.py).
The tar is indexed once; every member is checked before anything is read, so
a hostile or broken OVA is refused before vSphere is touched.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from pathlib import Path
from typing import BinaryIO, Callable, Protocol

from vmcoreos.errors import UnsafeArchiveError, VerificationError
from vmcoreos.images.archive import ovf
from vmcoreos.images.archive.manifest import ManifestCheck, MemberDigestTap, parse_manifest
from vmcoreos.images.archive.ovf import Ovf
from vmcoreos.images.verified import identity
from vmcoreos.images.transfer.taps import pump
from vmcoreos.images.trust.digests import Check



class Archive(Protocol):
    """What an importer needs of an image: its parsed descriptor, and each file as (stream, size)."""

    name: str  # what messages call it
    descriptor: Ovf

    def open(self, name: str) -> tuple[BinaryIO, int]: ...


class CheckedArchive(Archive, Protocol):
    """An Archive whose bytes are checked as they stream: the .mf digests, and the file left unchanged."""

    def manifest_check(self, name: str) -> Check | None: ...

    def verify_descriptor_against_manifest(self) -> None: ...

    def verify_uploaded(self) -> None: ...


class OvaArchive:
    def __init__(self, path: Path, *, name: str | None = None, fileobj: BinaryIO | None = None,
                 identity: tuple[int, ...] | None = None, verified: bool = False):
        """name: what messages call the file (a download is checked as <name>.part, before its rename).

        fileobj: read this open file (the verified descriptor) instead of opening path; identity: its
        fstat identity at verification, which check_unchanged() holds it to. verified: that verification
        covered the .mf digests too, so an upload need not take them again (see manifest_check).
        """
        self.path = Path(path)
        self._verified = verified and fileobj is not None and identity is not None
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
        if identity(self._file) != self._identity:
            raise VerificationError(
                f"{self.name} was written to, replaced or renamed after it was verified; whatever else"
                " touches it must stop, then run again"
            )

    def verify_uploaded(self) -> None:
        """After the upload, before it is completed: this archive was verified before it was read, so only
        the file's being unchanged is left to check (a StreamedOva gives its verdicts here)."""
        self.check_unchanged()

    def product_version(self) -> str | None:
        """The OVF ProductSection's Version (FCOS writes its release there; Flatcar and CoreOS leave it out)."""
        return self.descriptor.product_version

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

    def member_span(self, name: str) -> tuple[int, int]:
        """(offset of its data in the file, size) of a member, for a reader of the file itself."""
        member = self._members.get(name)
        if member is None:
            raise UnsafeArchiveError(f"{self.name}: no member {name!r}")
        return member.offset_data, member.size

    def open(self, name: str) -> tuple[BinaryIO, int]:
        member = self._members.get(name)
        if member is None:
            raise UnsafeArchiveError(f"{self.name}: no member {name!r}")
        if member.sparse is None:
            # Read at its offset in the file: tarfile's member stream copies each chunk twice more,
            # half a second of CPU per GiB in the middle of the upload.
            fd = self._tar.fileobj.fileno()
            return MemberReader(lambda pos, n: os.pread(fd, n, pos), member.offset_data, member.size, self.name), member.size
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

    def _read_descriptor(self) -> Ovf:
        ovfs = [n for n in self._members if n.lower().endswith(".ovf")]
        if not ovfs:
            raise UnsafeArchiveError(f"{self.name} has no .ovf descriptor; it is not a VMware OVA")
        return ovf.parse(self._read_small(ovfs[0]), self.name, ovfs[0])

    def disk_capacity(self) -> int:
        """Bytes the OVF's disks can grow to (DiskSection capacity x its allocation units)."""
        return self.descriptor.capacity(self.name)

    def disk_populated(self) -> int:
        """Bytes the OVF's disks hold once imported thin (see Ovf.populated)."""
        return self.descriptor.populated(self.name, lambda href: self.size(href) if href in self._members else None)

    def _read_manifest(self) -> dict[str, tuple[str, str]]:
        mfs = [n for n in self._members if n.lower().endswith(".mf")]
        if not mfs:
            return {}
        return parse_manifest(self._read_small(mfs[0]))

    def manifest_check(self, name: str) -> Check | None:
        """A digest check to run on a member's bytes as they are uploaded; None when nothing is left to check.

        Nothing is for a verified image: its one pass checked every .mf digest, and verify_uploaded()
        holds the descriptor to the identity it had then, so the upload reads those very bytes. Taking
        the SHA-1 again cost a core for the whole upload (0.76x curl's speed on 2 cores).
        """
        if self._verified:
            return None
        return self._digest_check(name)

    def _digest_check(self, name: str) -> Check | None:
        entry = self.manifest.get(name)
        if entry is None:
            return None
        algo, digest = entry
        return ManifestCheck(algo, digest, f"{self.name}: {name}")

    def verify_descriptor_against_manifest(self) -> None:
        for name, (algo, digest) in self.manifest.items():
            if name.lower().endswith(".ovf"):
                check = ManifestCheck(algo, digest, f"{self.name}: {name}")
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
                check = self._digest_check(name)
                stream, _ = self.open(name)
                with stream:
                    pump(stream, [check])
            check.finish()


class MemberReader:
    """A member's bytes read from the archive file at their offset, by read_at(pos, n) (pread: no shared position)."""

    def __init__(self, read_at: Callable[[int, int], bytes], offset: int, size: int, name: str):
        self._read_at = read_at
        self._pos = offset
        self._end = offset + size
        self._name = name

    def read(self, size: int = -1) -> bytes:
        n = self._end - self._pos if size is None or size < 0 else min(size, self._end - self._pos)
        if n <= 0:
            return b""
        chunk = self._read_at(self._pos, n)
        if not chunk:
            raise VerificationError(f"{self._name} got shorter while it was read; whatever writes to it must stop,"
                                    " then run again")
        self._pos += len(chunk)
        return chunk

    def close(self) -> None:
        pass

    def __enter__(self) -> "MemberReader":
        return self

    def __exit__(self, *exc) -> None:
        pass
