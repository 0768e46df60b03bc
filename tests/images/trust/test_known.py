"""The record of verified images vouches only while file, signature, keys and metadata are all unchanged."""

from __future__ import annotations

import os

import pytest

from vmcoreos.images.trust import known
from vmcoreos.images.trust.keys import PublicKey
from vmcoreos.images.verified import identity, open_image
from vmcoreos.images.trust.verifiers import Verdict

KEY = PublicKey("A" * 40, b"key", "test")
OTHER = PublicKey("B" * 40, b"other", "test")
SIG = b"signature bytes"


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "state" / "image.ova"  # in the cache root the tests pass: only there a record vouches
    path.parent.mkdir()
    path.write_bytes(b"x" * 4096)
    settled = os.stat(path).st_mtime_ns - 10 * known.RACY_NS
    os.utime(path, ns=(settled, settled))
    return path


def record(path, state, stamped=None, sig=SIG, sha256=None):
    with open_image(path) as f:
        ident = identity(f)
        stamped = ident[4] + known.RACY_NS + 1 if stamped is None else stamped
        known.remember(path, ident, stamped, sig, [KEY], Verdict(KEY.fingerprint, "sub", False), "ab" * 64,
                       "local-abab", sha256=sha256, cache_root=state)


def recall(path, state, sig=SIG, keys=(KEY,), sha256=None):
    with open_image(path) as f:
        return known.recall(path, f, sig, list(keys), sha256=sha256, cache_root=state)


def test_unchanged_file_signature_and_keys_are_vouched_for(image, tmp_path):
    record(image, tmp_path / "state")
    found = recall(image, tmp_path / "state")
    assert found is not None and found.sha512 == "ab" * 64 and found.version == "local-abab"
    assert known.verdict(found) == Verdict(KEY.fingerprint, "sub", False)


@pytest.mark.parametrize("change", ["signature", "keys", "sha256", "written", "replaced"])
def test_any_change_is_verified_again(image, tmp_path, change):
    state = tmp_path / "state"
    record(image, state, sha256="cd" * 32)
    sig, keys, sha256 = SIG, (KEY,), "cd" * 32
    if change == "signature":
        sig = b"another signature"
    elif change == "keys":
        keys = (KEY, OTHER)
    elif change == "sha256":
        sha256 = "ef" * 32
    elif change == "written":
        with open(image, "r+b") as f:
            f.write(b"y")
    else:
        copy = image.with_suffix(".new")
        copy.write_bytes(image.read_bytes())
        os.replace(copy, image)
    assert recall(image, state, sig, keys, sha256) is None


def test_a_file_changed_just_before_its_record_vouches_for_nothing(image, tmp_path):
    # Within the racy window a write in the same timestamp tick could leave ctime as it was.
    ctime = os.stat(image).st_ctime_ns
    record(image, tmp_path / "state", stamped=ctime + known.RACY_NS // 2)
    assert recall(image, tmp_path / "state") is None


def test_unverified_images_are_never_recorded(image, tmp_path):
    with open_image(image) as f:
        known.remember(image, identity(f), 0, None, [KEY], None, "ab" * 64, "local-abab", cache_root=tmp_path)
    assert recall(image, tmp_path, sig=None) is None
    assert not (tmp_path / "state" / "images.json").exists()


def test_a_file_outside_the_cache_is_never_vouched_for(tmp_path):
    outside = tmp_path / "elsewhere.ova"
    outside.write_bytes(b"x" * 4096)
    settled = os.stat(outside).st_mtime_ns - 10 * known.RACY_NS
    os.utime(outside, ns=(settled, settled))
    record(outside, tmp_path / "state")
    assert recall(outside, tmp_path / "state") is None
    assert not (tmp_path / "state" / "state" / "images.json").exists()
