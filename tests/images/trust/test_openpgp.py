"""Reading keys and signatures: checked against the facts recorded for the real vendor keys (coreos-facts.md §2)."""

import time

import pytest

from vmcoreos.images.trust import keys, openpgp


def _day(t):
    return time.strftime("%Y-%m-%d", time.gmtime(t)) if t else None


@pytest.fixture(scope="module")
def flatcar():
    return {k.keyid: k for k in openpgp.signing_keys(keys.pinned_key("flatcar").data)}


@pytest.fixture(scope="module")
def coreos():
    return {k.keyid: k for k in openpgp.signing_keys(keys.pinned_key("coreos").data)}


@pytest.mark.parametrize("keyid, created, end, revoked", [
    ("B51DE377064D542D", "2018-02-26", "2019-02-26", True),
    ("603443A1D0FC498C", "2018-03-14", "2019-03-14", True),
    ("85F7C8868837E271", "2023-03-07", "2025-03-06", False),
    ("32DA80F91EF52974", "2025-03-07", "2027-03-08", False),
])
def test_flatcar_subkeys_read_as_the_facts_list_them(flatcar, keyid, created, end, revoked):
    key = flatcar[keyid]
    assert (_day(key.created), _day(key.expires), key.revoked) == (created, end, revoked)
    assert key.primary == "F88CFEDEFF29A5B4D9523864E25D9AED0593B34A"
    assert key.binding_hashes <= openpgp.SHA2


def test_the_coreos_key_rests_on_sha1_self_signatures(coreos):
    # Its user ID was certified with SHA-1 (2017) and its first subkeys bound with it: where sqv and gpgv differ.
    assert 2 in coreos["50E0885593D2DCB4"].binding_hashes
    assert 2 in coreos["01C9CAE767B3CA0E"].binding_hashes
    assert coreos["8633FB13B58844F1"].revoked and _day(coreos["01C9CAE767B3CA0E"].expires) == "2021-06-01"
    assert coreos["50E0885593D2DCB4"].expires is None


def test_a_detached_signature_names_its_subkey_and_hash(signer, tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"data")
    info = openpgp.read_detached_signature(signer.sign_detached(f).read_bytes())
    assert info.issuer_fingerprint == signer.subkey_fingerprint
    assert info.issuer_keyid == signer.subkey_fingerprint[-16:]
    assert info.hash_algo in openpgp.SHA2 and abs(info.created - time.time()) < 60
    key = openpgp.signer_of(info, signer.public_key_bytes())
    assert (key.fingerprint, key.primary) == (signer.subkey_fingerprint, signer.fingerprint)


@pytest.mark.parametrize("data, message", [
    (b"", "0 signatures"),
    (b"\x88\x05\x04\x00", "truncated packet"),
    (b"not a packet", "not an OpenPGP packet"),
    # a v3 signature packet: version 3 is not read
    (bytes([0xC2, 6, 3, 0, 1, 8, 0, 0]), "version 3"),
])
def test_what_is_not_one_v4_signature_is_refused(data, message):
    with pytest.raises(ValueError, match=message):
        openpgp.read_detached_signature(data)


def test_a_key_signature_is_not_a_signature_over_a_file(signer):
    # The key's own binding signatures are valid packets, but not of type 0x00/0x01.
    data = signer.public_key_bytes()
    sig = next(bytes([0xC2]) + _length(body) + body for tag, body in openpgp.packets(data) if tag == 2)
    with pytest.raises(ValueError, match="not a signature over a file"):
        openpgp.read_detached_signature(sig)


def _length(body):
    n = len(body)
    if n < 192:
        return bytes([n])
    if n < 8384:
        n -= 192
        return bytes([(n >> 8) + 192, n & 0xFF])
    return b"\xff" + n.to_bytes(4, "big")


def test_hostile_bytes_are_refused_as_value_errors_never_anything_else(signer, tmp_path):
    # Every byte of a real signature and keyring flipped in turn: the parser answers or says ValueError.
    import random

    f = tmp_path / "f"
    f.write_bytes(b"data")
    sig = signer.sign_detached(f).read_bytes()
    ring = signer.public_key_bytes()
    rng = random.Random(16)
    for data, read in ((sig, openpgp.read_detached_signature), (ring, openpgp.signing_keys)):
        for i in range(len(data)):
            bad = bytearray(data)
            bad[i] ^= rng.randrange(1, 256)
            for sample in (bytes(bad), bytes(bad[: i + 1])):
                try:
                    read(sample)
                except ValueError:
                    pass
