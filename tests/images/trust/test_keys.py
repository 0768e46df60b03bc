"""The pinned image-signing keys and the keys a user trusts."""

import pytest

from vmcoreos.errors import ConfigError
from vmcoreos.images.trust import keys


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


def test_fedora_release_keys_ship_pinned_one_per_major():
    found = {k.fingerprint for k in keys.pinned_keys("fedora-coreos")}
    assert found == set(keys.PINNED_FEDORA.values()) and len(found) == 3
    assert [k.fingerprint for k in keys.pinned_keys("flatcar")] == ["F88CFEDEFF29A5B4D9523864E25D9AED0593B34A"]


@pytest.mark.parametrize("version, major", [("43.20261115.3.0", 43), ("44.20270301.2.1", 44), ("45.20270801.1.0", 45)])
def test_a_fedora_build_is_checked_against_its_majors_key_only(version, major):
    pinned = keys.pinned_keys("fedora-coreos")
    assert [k.fingerprint for k in keys.for_release(pinned, "fedora-coreos", version)] == [keys.PINNED_FEDORA[major]]


def test_the_next_fedora_key_comes_from_the_user(signer, tmp_path):
    from vmcoreos.settings import trusted_key

    mine = keys.trusted_keys([trusted_key(f"fedora-coreos={signer.write_public_key(tmp_path / 'f46.asc')}", "flatcar")],
                             "fedora-coreos")
    chosen = keys.for_release(keys.pinned_keys("fedora-coreos") + mine, "fedora-coreos", "46.20270105.3.0")
    assert [k.fingerprint for k in chosen] == [signer.fingerprint]
    assert keys.for_release(keys.pinned_keys("fedora-coreos"), "fedora-coreos", "46.20270105.3.0") == []


def test_a_shipped_fedora_keyring_that_differs_from_its_pins_is_refused(monkeypatch):
    monkeypatch.setitem(keys.PINNED_FEDORA, 45, "0" * 40)
    with pytest.raises(ConfigError, match="not the pinned Fedora keys"):
        keys.pinned_keys("fedora-coreos")
