"""The pinned image-signing keys and the keys a user trusts."""

import pytest

from vmcoreos.errors import ConfigError
from vmcoreos.images import keys


def test_pinned_keys_match_their_fingerprints():
    assert keys.pinned_key("flatcar").fingerprint == "F88CFEDEFF29A5B4D9523864E25D9AED0593B34A"
    assert keys.pinned_key("coreos").fingerprint == "04127D0BFABEC8871FFB2CCE50E0885593D2DCB4"


def test_a_file_that_is_not_a_key_is_a_config_error():
    with pytest.raises(ConfigError, match="not an OpenPGP public key"):
        keys.load_key_bytes(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm9wZQ==\n-----END PGP PUBLIC KEY BLOCK-----\n", "x")


def test_a_truncated_key_is_a_config_error(signer):
    with pytest.raises(ConfigError, match="truncated packet"):
        keys.load_key_bytes(signer.public_key_bytes()[:-7], "cut.gpg")


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
