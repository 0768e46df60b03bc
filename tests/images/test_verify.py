"""Signature checks through the real gpgv, with throwaway keys made at test time."""

import pytest

from vmcoreos.errors import ConfigError, VerificationError
from vmcoreos.images import keys
from vmcoreos.images.stream import pump
from vmcoreos.images.verify import SignatureCheck


@pytest.fixture
def image(tmp_path):
    f = tmp_path / "image.ova"
    f.write_bytes(b"flatcar" * 100_000)
    return f


def _check(signer, image, sig, key_sources=None):
    trusted = keys.load_key_bytes(signer.public_key_bytes(), "test key") if key_sources is None else key_sources
    check = SignatureCheck(sig.read_bytes(), trusted, image.name)
    with image.open("rb") as f:
        pump(f, [check])
    return check.finish()


def test_pinned_keys_match_their_fingerprints():
    assert keys.pinned_key("flatcar").fingerprint == "F88CFEDEFF29A5B4D9523864E25D9AED0593B34A"
    assert keys.pinned_key("coreos").fingerprint == "04127D0BFABEC8871FFB2CCE50E0885593D2DCB4"


def test_good_signature_names_the_primary_key(signer, image, tmp_path):
    sig = tmp_path / "s.sig"
    signer.sign_detached(image, sig)
    verdict = _check(signer, image, sig)
    assert verdict.primary_fingerprint == signer.fingerprint


def test_tampered_byte_is_refused(signer, image, tmp_path):
    sig = tmp_path / "s.sig"
    signer.sign_detached(image, sig)
    data = bytearray(image.read_bytes())
    data[1000] ^= 1
    image.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="BAD signature"):
        _check(signer, image, sig)


def test_truncated_signature_is_refused(signer, image, tmp_path):
    sig = tmp_path / "s.sig"
    signer.sign_detached(image, sig)
    sig.write_bytes(sig.read_bytes()[:20])
    with pytest.raises(VerificationError, match="truncated|could not be checked"):
        _check(signer, image, sig)


def test_unknown_key_is_refused(signer, image, tmp_path):
    sig = tmp_path / "s.sig"
    signer.sign_detached(image, sig)
    with pytest.raises(VerificationError, match="unknown key"):
        _check(signer, image, sig, key_sources=[keys.pinned_key("flatcar")])


@pytest.mark.e2e
def test_expired_subkey_is_accepted_as_gpg_does(tmp_path):
    from tests.harness.signing import TestSigner

    with TestSigner.create(tmp_path / "k") as signer:
        f = tmp_path / "old.ova"
        f.write_bytes(b"old release" * 1000)
        sig = tmp_path / "old.sig"
        signer.sign_detached_expired(f, sig)
        verdict = _check(signer, f, sig)
        assert verdict.expired_key and verdict.primary_fingerprint == signer.fingerprint


@pytest.mark.e2e
def test_revoked_subkey_is_refused(tmp_path):
    from tests.harness.signing import TestSigner

    with TestSigner.create(tmp_path / "k") as signer:
        f = tmp_path / "r.ova"
        f.write_bytes(b"revoked" * 1000)
        sig = tmp_path / "r.sig"
        signer.sign_detached_revoked(f, sig)
        with pytest.raises(VerificationError, match="revoked key"):
            _check(signer, f, sig)


def test_signature_by_a_key_outside_the_pins_is_refused(signer, image, tmp_path):
    # Both keys in gpgv's keyring, but only the Flatcar key is allowed: pinning is by primary fingerprint.
    sig = tmp_path / "s.sig"
    signer.sign_detached(image, sig)
    own = keys.load_key_bytes(signer.public_key_bytes(), "test key")[0]
    pinned = keys.pinned_key("flatcar")
    check = SignatureCheck(sig.read_bytes(), [pinned, own], image.name)
    check.allowed = {pinned.fingerprint}
    with image.open("rb") as f:
        pump(f, [check])
    with pytest.raises(VerificationError, match="not pinned"):
        check.finish()


def test_a_file_that_is_not_a_key_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not an OpenPGP public key"):
        keys.load_key_bytes(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm9wZQ==\n-----END PGP PUBLIC KEY BLOCK-----\n", "x")


def test_gpgv_that_gives_up_early_never_blocks_the_image_pass(signer, tmp_path):
    import threading

    data = tmp_path / "big.ova"
    data.write_bytes(b"x" * (40 << 20))
    sig = signer.sign_detached(data, tmp_path / "big.sig")
    check = SignatureCheck(sig.read_bytes()[:20], keys.load_key_bytes(signer.public_key_bytes(), "k"), "big.ova")
    with data.open("rb") as f:
        pump(f, [check])  # gpgv has exited on the bad signature; the feeder drains instead of blocking
    with pytest.raises(VerificationError):
        check.finish()
    assert not [t for t in threading.enumerate() if t.name == "gpgv-feed"]


def test_abort_mid_image_stops_gpgv_and_its_thread(signer, image, tmp_path):
    import threading

    sig = signer.sign_detached(image, tmp_path / "s.sig")
    check = SignatureCheck(sig.read_bytes(), keys.load_key_bytes(signer.public_key_bytes(), "k"), image.name)
    check.update(image.read_bytes()[:1000])
    check.abort()
    assert check._proc.poll() is not None
    assert not [t for t in threading.enumerate() if t.name == "gpgv-feed"]


# -- issue 10, item 11: gpgv by absolute path, a pin check that survives -O, scoped keys ----------


@pytest.fixture
def fresh_gpgv():
    from vmcoreos.images.verify import gpgv_binary

    clear = getattr(gpgv_binary, "cache_clear", lambda: None)  # resolved once per process
    clear()
    yield gpgv_binary
    clear()


def test_a_gpgv_planted_on_path_is_never_run(signer, image, tmp_path, monkeypatch, fresh_gpgv):
    # A fake gpgv that approves everything, first on PATH: the tampered image must still be refused.
    fake = tmp_path / "bin" / "gpgv"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\ncat >/dev/null\necho '[GNUPG:] GOODSIG 0 x'\n"
        f"echo '[GNUPG:] VALIDSIG {signer.fingerprint} 2025-01-01 0 0 4 0 22 10 00 {signer.fingerprint}'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    monkeypatch.delenv("VMCOREOS_GPGV", raising=False)
    sig = signer.sign_detached(image, tmp_path / "s.sig")
    image.write_bytes(image.read_bytes() + b"tampered")
    with pytest.raises(VerificationError, match="BAD signature"):
        _check(signer, image, sig)
    assert fresh_gpgv() == "/usr/bin/gpgv"


@pytest.mark.parametrize("value, message", [("gpgv", "must be an absolute path"), ("/nonexistent/gpgv", "not an executable")])
def test_gpgv_override_must_be_an_absolute_executable(monkeypatch, fresh_gpgv, value, message):
    monkeypatch.setenv("VMCOREOS_GPGV", value)
    with pytest.raises(ConfigError, match=message):
        fresh_gpgv()


def test_a_shipped_key_that_differs_from_its_pin_is_refused_without_assert(monkeypatch):
    monkeypatch.setitem(keys.PINNED, "flatcar", ("0" * 40, keys.PINNED["flatcar"][1]))
    with pytest.raises(ConfigError, match="not the pinned key 0000"):
        keys.pinned_key("flatcar")


def test_trusted_keys_count_only_for_their_distro(signer, tmp_path):
    from vmcoreos.settings import trusted_key

    path = signer.write_public_key(tmp_path / "k.asc")
    assert trusted_key(str(path), "flatcar").distro == "flatcar"
    scoped = trusted_key(f"fedora-coreos={path}", "flatcar")
    assert scoped == trusted_key(path, "fedora-coreos")
    assert keys.trusted_keys([scoped], "flatcar") == []
    assert [k.fingerprint for k in keys.trusted_keys([scoped], "fedora-coreos")] == [signer.fingerprint]


def test_the_export_hint_names_one_key():
    with pytest.raises(ConfigError, match=r"gpg --export <FINGERPRINT>"):
        keys.load_key_bytes(b"not a key at all", "x.asc")


def test_the_image_pass_hashes_beside_the_thread_that_reads(mocker):
    # The reading (or receiving) thread only hands chunks on: SHA-512 and the .mf digests run on
    # threads of their own, so on 2 cores they overlap gpgv and the read instead of queueing behind them.
    import threading

    from vmcoreos.images.imagepass import ImagePass
    from vmcoreos.images.manifest import MemberDigestTap
    from vmcoreos.images.verify import Sha512Tap

    seen = {}
    for cls in (Sha512Tap, MemberDigestTap):
        real = cls.update
        mocker.patch.object(cls, "update", autospec=True, side_effect=lambda self, chunk, real=real, cls=cls: (
            seen.setdefault(cls.__name__, set()).add(threading.get_ident()), real(self, chunk)))
    check = ImagePass("x.ova", None, [], members=True)
    check.update(b"\0" * 4096)
    _, sha512 = check.finish()
    import hashlib

    assert sha512 == hashlib.sha512(b"\0" * 4096).hexdigest()
    assert seen["Sha512Tap"] and threading.get_ident() not in seen["Sha512Tap"]
    assert seen["MemberDigestTap"] and threading.get_ident() not in seen["MemberDigestTap"]
    assert not seen["Sha512Tap"] & seen["MemberDigestTap"]
