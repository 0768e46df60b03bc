"""What goes up is what was verified: the upload's one read is held to the verified SHA-512."""

from __future__ import annotations

import mmap
import os
import shutil
import tarfile
import time
from types import SimpleNamespace

import pytest

from vmcoreos.errors import VerificationError
from vmcoreos.images.verified_upload import upload_read

QUIET = SimpleNamespace(event=lambda m: None, transfer=lambda *a: None)


def _disk_offset(ova) -> int:
    with tarfile.open(ova) as tar:
        disk = next(m for m in tar.getmembers() if m.name.endswith(".vmdk"))
        return disk.offset_data + disk.size // 2


def test_a_change_through_a_shared_mapping_after_verification_is_refused_before_the_lease_completes(
        signed_ova, tmp_path):
    # Linux leaves mtime and ctime as they are for writes to a page that is already dirty in a shared
    # writable mapping (until writeback): the file's identity cannot see this change, only its bytes can.
    from vmcoreos.images.fetch import obtain
    from vmcoreos.images.verified import identity
    from vmcoreos.settings import ImageSettings, TrustedKey

    ova = tmp_path / "flatcar.ova"
    shutil.copyfile(signed_ova["ova"], ova)
    at = _disk_offset(ova)
    image = ImageSettings(ova=str(ova), sig=str(signed_ova["sig"]),
                          trusted_keys=(TrustedKey(signed_ova["key"], "flatcar"),))
    with open(ova, "r+b") as writer:
        mapping = mmap.mmap(writer.fileno(), 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            mapping[at] = mapping[at]  # the page is dirty before the verification starts
            verified = obtain(image, cache_dir=tmp_path / "cache", reporter=QUIET)
            try:
                before = identity(verified.file)
                mapping[at] = mapping[at] ^ 0xFF  # the attacker's write, after the verification
                assert identity(verified.file) == before  # the premise: fstat does not show it
                with upload_read(verified) as archive:
                    for f in archive.descriptor.files:
                        stream, _ = archive.open(f.href)
                        with stream:
                            while stream.read(1 << 20):
                                pass
                    # what the importer calls after the last byte and before HttpNfcLeaseComplete
                    with pytest.raises(VerificationError, match="are not the ones verified"):
                        archive.verify_uploaded()
            finally:
                verified.close()
        finally:
            mapping.close()


def test_an_unchanged_verified_image_passes_its_upload_check(signed_ova, tmp_path):
    from vmcoreos.images.fetch import obtain
    from vmcoreos.settings import ImageSettings, TrustedKey

    image = ImageSettings(ova=str(signed_ova["ova"]), sig=str(signed_ova["sig"]),
                          trusted_keys=(TrustedKey(signed_ova["key"], "flatcar"),))
    verified = obtain(image, cache_dir=tmp_path / "cache", reporter=QUIET)
    try:
        with upload_read(verified) as archive:
            for f in archive.descriptor.files:
                stream, _ = archive.open(f.href)
                with stream:
                    stream.read()
            archive.verify_uploaded()
    finally:
        verified.close()


def test_a_record_vouches_only_for_files_inside_the_private_cache(signed_ova, tmp_path):
    # An --ova outside the cache is read in full on every run: whoever can write it could change its bytes
    # without moving its identity (above), so no record of this host may stand in for reading it.
    from vmcoreos.images.fetch import obtain
    from vmcoreos.settings import ImageSettings, TrustedKey

    ova = tmp_path / "flatcar.ova"
    shutil.copyfile(signed_ova["ova"], ova)
    time.sleep(2.1)  # settled (images/trust/known.py RACY_NS): the racy-file rule is not what decides here
    image = ImageSettings(ova=str(ova), sig=str(signed_ova["sig"]),
                          trusted_keys=(TrustedKey(signed_ova["key"], "flatcar"),))
    for _ in range(2):
        events = []
        got = obtain(image, cache_dir=tmp_path / "cache",
                     reporter=SimpleNamespace(event=events.append, transfer=lambda *a: None))
        got.close()
        assert any(e.startswith("verifying ") for e in events), events
        assert not any("not reading it again" in e for e in events), events
