"""The signature rules, each checked through both real verifiers (sqv and gpgv) with throwaway keys."""

import subprocess
import threading
import time

import pytest

from tests.harness.signing import DAY, TestSigner
from vmcoreos.errors import ConfigError, VerificationError
from vmcoreos.images.trust import keys, openpgp, verifiers
from vmcoreos.images.trust.signature import SignatureCheck, choose_verifier
from vmcoreos.images.transfer.taps import pump


@pytest.fixture
def fresh_binaries():
    """gpgv and sqv are looked up once per process; each test that changes the environment looks again."""
    for f in (verifiers.gpgv_binary, verifiers.sqv_binary):
        f.cache_clear()
    yield
    for f in (verifiers.gpgv_binary, verifiers.sqv_binary):
        f.cache_clear()


@pytest.fixture(params=["sqv", "gpgv"])
def verifier(request, monkeypatch, fresh_binaries):
    """Each rule through each verifier: gpgv is made to judge everything by VMCOREOS_SQV=off."""
    if request.param == "gpgv":
        monkeypatch.setenv("VMCOREOS_SQV", "off")
    else:
        monkeypatch.delenv("VMCOREOS_SQV", raising=False)
        assert verifiers.sqv_binary() == "/usr/bin/sqv", "make deps installs Debian's sqv"
    return request.param


@pytest.fixture
def own(tmp_path):
    with TestSigner.create(tmp_path / "k") as s:
        yield s


@pytest.fixture
def image(tmp_path):
    f = tmp_path / "image.ova"
    f.write_bytes(b"flatcar" * 100_000)
    return f


def _check(signer, image, sig, trusted=None):
    trusted = keys.load_key_bytes(signer.public_key_bytes(), "test key") if trusted is None else trusted
    check = SignatureCheck(sig.read_bytes(), trusted, image.name)
    with image.open("rb") as f:
        pump(f, [check])
    return check, check.finish


def _verdict(signer, image, sig, trusted=None):
    check, finish = _check(signer, image, sig, trusted)
    return finish()


def test_good_signature_names_the_primary_key_and_the_subkey(verifier, signer, image, tmp_path):
    sig = signer.sign_detached(image, tmp_path / "s.sig")
    verdict = _verdict(signer, image, sig)
    assert (verdict.primary_fingerprint, verdict.signing_key) == (signer.fingerprint, signer.subkey_fingerprint)
    assert (verdict.expired_key, verdict.verifier) == (False, verifier)


def test_tampered_byte_is_refused(verifier, signer, image, tmp_path):
    sig = signer.sign_detached(image, tmp_path / "s.sig")
    data = bytearray(image.read_bytes())
    data[1000] ^= 1
    image.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="BAD signature"):
        _verdict(signer, image, sig)


def test_truncated_signature_is_refused(verifier, signer, image, tmp_path):
    sig = signer.sign_detached(image, tmp_path / "s.sig")
    sig.write_bytes(sig.read_bytes()[:20])
    with pytest.raises(VerificationError, match="truncated|could not be checked"):
        _verdict(signer, image, sig)


def test_unknown_key_is_refused_by_its_id(verifier, signer, image, tmp_path):
    sig = signer.sign_detached(image, tmp_path / "s.sig")
    with pytest.raises(VerificationError, match=f"unknown key .*{signer.subkey_fingerprint[-16:]}"):
        _verdict(signer, image, sig, [keys.pinned_key("flatcar")])


def test_expired_subkey_is_accepted_and_noted_for_a_signature_made_before_the_expiry(verifier, own, image, tmp_path):
    sig = tmp_path / "old.sig"
    expired = own.sign_detached_expired(image, sig)
    verdict = _verdict(own, image, sig)
    assert (verdict.expired_key, verdict.signing_key) == (True, expired)
    assert verdict.primary_fingerprint == own.fingerprint and verdict.verifier == verifier


def test_a_signature_made_after_its_subkey_expired_is_refused(verifier, own, image, tmp_path):
    # gpgv alone accepts this (EXPKEYSIG: it compares the expiry with now only); our rule is the signing time.
    now = int(time.time())
    sk = own.add_signing_subkey(created=now - 3 * DAY, expires=now - 2 * DAY)
    sig = own.sign_detached(image, tmp_path / "late.sig", subkey=sk, at=now - 2 * DAY - 5)
    own.expire_subkey(sk, at=now - 2 * DAY - 3600)  # the binding now says it ended before it signed
    with pytest.raises(VerificationError, match=f"by subkey {sk[-16:]}, which had expired"):
        _verdict(own, image, sig)


def test_revoked_subkey_is_refused(verifier, own, image, tmp_path):
    sig = tmp_path / "r.sig"
    revoked = own.sign_detached_revoked(image, sig)
    with pytest.raises(VerificationError, match=f"revoked key {revoked[-16:]}"):
        _verdict(own, image, sig)


def test_signature_by_a_key_outside_the_pins_is_refused(verifier, signer, image, tmp_path):
    # Both keys in the verifier's keyring, but only the Flatcar key is allowed: pinning is by primary fingerprint.
    sig = signer.sign_detached(image, tmp_path / "s.sig")
    own = keys.load_key_bytes(signer.public_key_bytes(), "test key")[0]
    pinned = keys.pinned_key("flatcar")
    check = SignatureCheck(sig.read_bytes(), [pinned, own], image.name)
    check.allowed = {pinned.fingerprint}
    with image.open("rb") as f:
        pump(f, [check])
    with pytest.raises(VerificationError, match="not pinned"):
        check.finish()


def test_a_sha1_signature_goes_to_gpgv_which_accepts_it_where_sqv_would_not(fresh_binaries, own, image, tmp_path):
    sig = tmp_path / "sha1.sig"
    own._gpg("--digest-algo", "SHA1", *own._signing_args(None), "--output", str(sig), "--detach-sign", str(image))
    assert openpgp.read_detached_signature(sig.read_bytes()).hash_algo == 2
    verdict = _verdict(own, image, sig)
    assert (verdict.verifier, verdict.primary_fingerprint) == ("gpgv", own.fingerprint)
    ring = own.write_keyring(tmp_path / "k.gpg")
    alone = subprocess.run(["sqv", "--keyring", str(ring), str(sig), str(image)], capture_output=True, text=True)
    assert alone.returncode != 0  # why the rule exists: Sequoia's policy refuses SHA-1 data signatures


def test_the_verifier_is_chosen_from_the_signature_and_the_key():
    flatcar = {k.keyid: k for k in openpgp.signing_keys(keys.pinned_key("flatcar").data)}
    coreos = {k.keyid: k for k in openpgp.signing_keys(keys.pinned_key("coreos").data)}

    def sig(hash_algo=10, fpr="52F145DFD00BBDCD928CBB5A32DA80F91EF52974", keyid=None):
        return openpgp.SignatureInfo(0, hash_algo, 1_750_000_000, fpr, keyid, None)

    table = [
        (sig(), flatcar["32DA80F91EF52974"], "/usr/bin/sqv", "sqv"),
        (sig(hash_algo=8), flatcar["85F7C8868837E271"], "/usr/bin/sqv", "sqv"),
        (sig(), flatcar["32DA80F91EF52974"], None, "gpgv"),  # sqv not installed
        (sig(hash_algo=2), flatcar["32DA80F91EF52974"], "/usr/bin/sqv", "gpgv"),  # SHA-1 over the image
        (sig(), coreos["01C9CAE767B3CA0E"], "/usr/bin/sqv", "gpgv"),  # the CoreOS user ID is SHA-1
        (sig(fpr=None, keyid="0123456789ABCDEF"), None, "/usr/bin/sqv", "sqv"),  # names a key not there: refused
        (sig(fpr=None), None, "/usr/bin/sqv", "gpgv"),  # names no key: gpgv tries each
        (None, None, "/usr/bin/sqv", "gpgv"),  # unreadable: gpgv's words for it
    ]
    assert [choose_verifier(i, k, s) for i, k, s, _ in table] == [want for *_, want in table]


def test_a_verifier_that_gives_up_early_never_blocks_the_image_pass(verifier, signer, tmp_path):
    data = tmp_path / "big.ova"
    data.write_bytes(b"x" * (40 << 20))
    sig = signer.sign_detached(data, tmp_path / "big.sig")
    bad = sig.read_bytes()
    bad = bad[:-8] + bytes(8)  # a well-formed packet with a broken signature value
    check = SignatureCheck(bad, keys.load_key_bytes(signer.public_key_bytes(), "k"), "big.ova")
    with data.open("rb") as f:
        pump(f, [check])  # the verifier may exit at once; the feeder drains instead of blocking
    with pytest.raises(VerificationError):
        check.finish()
    assert not [t for t in threading.enumerate() if t.name == "verify-feed"]


def test_abort_mid_image_stops_the_verifier_and_its_thread(verifier, signer, image, tmp_path):
    sig = signer.sign_detached(image, tmp_path / "s.sig")
    check = SignatureCheck(sig.read_bytes(), keys.load_key_bytes(signer.public_key_bytes(), "k"), image.name)
    check.update(image.read_bytes()[:1000])
    check.abort()
    assert check._proc.poll() is not None
    assert not [t for t in threading.enumerate() if t.name == "verify-feed"]


@pytest.mark.parametrize("name", ["gpgv", "sqv"])
def test_a_verifier_planted_on_path_is_never_run(name, signer, image, tmp_path, monkeypatch, fresh_binaries):
    # A fake that approves everything, first on PATH: the tampered image must still be refused.
    fake = tmp_path / "bin" / name
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\ncat >/dev/null\necho '[GNUPG:] GOODSIG 0 x'\n"
        f"echo '[GNUPG:] VALIDSIG {signer.fingerprint} 2025-01-01 0 0 4 0 22 10 00 {signer.fingerprint}'\n"
        f"echo {signer.fingerprint}\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    monkeypatch.delenv("VMCOREOS_GPGV", raising=False)
    monkeypatch.delenv("VMCOREOS_SQV", raising=False)
    sig = signer.sign_detached(image, tmp_path / "s.sig")
    image.write_bytes(image.read_bytes() + b"tampered")
    with pytest.raises(VerificationError, match="BAD signature"):
        _verdict(signer, image, sig)
    assert (verifiers.gpgv_binary(), verifiers.sqv_binary()) == ("/usr/bin/gpgv", "/usr/bin/sqv")


@pytest.mark.parametrize("variable, value, message", [
    ("VMCOREOS_GPGV", "gpgv", "must be an absolute path"),
    ("VMCOREOS_GPGV", "/nonexistent/gpgv", "not an executable"),
    ("VMCOREOS_SQV", "sqv", "must be an absolute path to sqv, like /usr/bin/sqv, or off"),
    ("VMCOREOS_SQV", "/nonexistent/sqv", "not an executable"),
])
def test_a_verifier_override_must_be_an_absolute_executable(monkeypatch, fresh_binaries, variable, value, message):
    monkeypatch.setenv(variable, value)
    lookup = verifiers.gpgv_binary if variable == "VMCOREOS_GPGV" else verifiers.sqv_binary
    with pytest.raises(ConfigError, match=message):
        lookup()


def test_without_sqv_gpgv_judges_everything(monkeypatch, fresh_binaries, signer, image, tmp_path):
    monkeypatch.setattr(verifiers, "SQV_PATHS", (str(tmp_path / "none"),))
    monkeypatch.delenv("VMCOREOS_SQV", raising=False)
    sig = signer.sign_detached(image, tmp_path / "s.sig")
    assert _verdict(signer, image, sig).verifier == "gpgv"


@pytest.mark.parametrize("code, out, err, message", [
    (0, "", "", "not one fingerprint"),
    (0, "F88CFEDEFF29A5B4D9523864E25D9AED0593B34A\nF88CFEDEFF29A5B4D9523864E25D9AED0593B34A\n", "", "not one fingerprint"),
    (0, "'; rm -rf /\n", "", "not one fingerprint"),
    (0, "04127D0BFABEC8871FFB2CCE50E0885593D2DCB4\n", "", "not pinned"),
    (1, "", "Verifying signature:\n  Message has been manipulated", "BAD signature"),
    (1, "", "Missing key E8906FA541E594FC, which is needed", "unknown key E8906FA541E594FC"),
    (1, "", "Error: Malformed packet: Truncated packet", "not a signature"),
    (1, "", "Signing key on X is not bound:\n No binding signature at time", "not valid"),
    (1, "", "\x1b[31mweird\x07 failure", r"sqv: \?\[31mweird\? failure"),
    (2, "F88CFEDEFF29A5B4D9523864E25D9AED0593B34A\n", "", "exit status 2"),
])
def test_what_sqv_says_is_read_strictly(code, out, err, message):
    allowed = {"F88CFEDEFF29A5B4D9523864E25D9AED0593B34A"}
    with pytest.raises(VerificationError, match=message):
        verifiers.judge_sqv(code, out, err, allowed, "x.ova")


def test_a_verifier_that_cannot_start_leaves_no_temporary_files(signer, image, tmp_path, monkeypatch, fresh_binaries):
    import tempfile

    monkeypatch.setenv("VMCOREOS_SQV", "off")
    monkeypatch.setenv("VMCOREOS_GPGV", str(tmp_path / "missing-gpgv"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    sig = signer.sign_detached(image, tmp_path / "s.sig")
    with pytest.raises(ConfigError, match="not an executable file"):
        SignatureCheck(sig.read_bytes(), keys.load_key_bytes(signer.public_key_bytes(), "k"), image.name)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_an_armored_signature_is_read_as_its_packets_and_judged_by_sqv(verifier, signer, image, tmp_path):
    sig = signer.sign_detached(image, tmp_path / "s.asc", armor=True)
    assert sig.read_bytes().startswith(b"-----BEGIN PGP SIGNATURE")
    verdict = _verdict(signer, image, sig)
    assert (verdict.verifier, verdict.signing_key) == (verifier, signer.subkey_fingerprint)


# -- a signature the packet reader cannot take as exactly one packet is refused -------------------


def _late_signature(own, image, tmp_path):
    """A signature made after its subkey expired: gpgv alone accepts it (EXPKEYSIG)."""
    now = int(time.time())
    sk = own.add_signing_subkey(created=now - 3 * DAY, expires=now - 2 * DAY)
    sig = own.sign_detached(image, tmp_path / "late.sig", subkey=sk, at=now - 2 * DAY - 5)
    armored = own.sign_detached(image, tmp_path / "late.asc", subkey=sk, at=now - 2 * DAY - 5, armor=True)
    own.expire_subkey(sk, at=now - 2 * DAY - 3600)
    return sig.read_bytes(), armored.read_bytes()


def _refused(own, image, data: bytes, tmp_path) -> VerificationError:
    sig = tmp_path / "mangled.sig"
    sig.write_bytes(data)
    with pytest.raises(VerificationError) as refused:
        _verdict(own, image, sig)
    return refused.value


def test_two_signature_packets_are_refused_not_left_to_gpgv(verifier, own, image, tmp_path):
    good = own.sign_detached(image, tmp_path / "good.sig").read_bytes()
    late, _ = _late_signature(own, image, tmp_path)
    for data in (late + late, good + late, late + good):
        assert "not a signature" in _refused(own, image, data, tmp_path).message


def test_junk_before_the_armor_is_refused(verifier, own, image, tmp_path):
    _, armored = _late_signature(own, image, tmp_path)
    for junk in (b"junk\n", b"Hash: SHA256\n\n", b"\x00", b"-----BEGIN PGP MESSAGE-----\n"):
        assert "not a signature" in _refused(own, image, junk + armored, tmp_path).message


def test_a_fuzz_of_duplicated_packets_and_junk_before_armor_never_gets_a_verdict(verifier, own, image, tmp_path):
    # Whatever the mix, a mangled late signature is refused; only the one untouched good signature passes.
    import random

    first = own.subkey_fingerprint
    good = own.sign_detached(image, tmp_path / "good.sig").read_bytes()
    late, late_armored = _late_signature(own, image, tmp_path)
    rng = random.Random(21)
    pieces = [late, good, late_armored, b"\n", b"junk", bytes([rng.randrange(256)]), b"-----BEGIN PGP SIGNATURE-----\n"]
    for _ in range(12):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(2, 4)))
        if data in (good, good.strip()):
            continue
        sig = tmp_path / "fuzz.sig"
        sig.write_bytes(data)
        with pytest.raises(VerificationError):
            _verdict(own, image, sig)
    (tmp_path / "good.sig").write_bytes(good)
    assert _verdict(own, image, tmp_path / "good.sig").signing_key == first
