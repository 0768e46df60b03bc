"""OpenPGP public keys: the pinned image-signing keys and user-trusted ones.

We parse just enough of the packet format to turn armored keys into a binary
keyring for the verifiers and to compute each primary key's v4 fingerprint, so a
signature can be pinned to a primary key rather than to "anything the verifier knows".
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from vmcoreos.errors import ConfigError
from vmcoreos.images.trust import openpgp

PINNED = {
    # Flatcar Buildbot (Official Builds); the key has no expiry, subkeys rotate.
    "flatcar": ("F88CFEDEFF29A5B4D9523864E25D9AED0593B34A", "Flatcar_Image_Signing_Key.asc"),
    # CoreOS Buildbot; end of life, kept for mirrors of old releases.
    "coreos": ("04127D0BFABEC8871FFB2CCE50E0885593D2DCB4", "CoreOS_Image_Signing_Key.asc"),
}
# Fedora signs each FCOS build with the release key of its major version (coreos-facts §2.4); one key per major,
# rotated twice a year. The next one is added by a newer vmcoreos, or meanwhile by --trusted-key fedora-coreos=FILE.
FEDORA_KEYS_FILE = "Fedora_43_44_45_release_keys.asc"
PINNED_FEDORA = {
    43: "C6E7F081CF80E13146676E88829B606631645531",
    44: "36F612DCF27F7D1A48A835E4DBFCF71C6D9F90A6",
    45: "4F50A6114CD5C6976A7F1179655A4B02F577861E",
}


@dataclass(frozen=True)
class PublicKey:
    fingerprint: str
    data: bytes  # binary transferable public key(s)
    source: str


def dearmor(text: str) -> bytes:
    """Binary packets from every ASCII-armored block in text."""
    out = b""
    inside = False
    body: list[str] = []
    headers_done = False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("-----BEGIN PGP"):
            inside, body, headers_done = True, [], False
            continue
        if line.startswith("-----END PGP"):
            out += base64.b64decode("".join(body))
            inside = False
            continue
        if not inside:
            continue
        if not headers_done:
            if line == "":
                headers_done = True
            elif ":" not in line:
                headers_done = True
                body.append(line)
            continue
        if line.startswith("="):
            continue  # CRC24 checksum line
        body.append(line)
    return out


def primary_fingerprints(data: bytes) -> list[str]:
    return [openpgp.v4_fingerprint(body) for tag, body in openpgp.packets(data) if tag == 6]  # not subkeys (14)


def load_key_bytes(raw: bytes, source: str) -> list[PublicKey]:
    try:
        data = dearmor(raw.decode("ascii")) if raw.lstrip().startswith(b"-----BEGIN") else raw
        fprs = primary_fingerprints(data)
    except (ValueError, UnicodeDecodeError, IndexError) as exc:
        raise ConfigError(
            f"{source} is not an OpenPGP public key ({exc}); export just that key with gpg --export <FINGERPRINT>"
        ) from None
    if not fprs:
        raise ConfigError(f"{source} holds no OpenPGP public key; export just that key with gpg --export <FINGERPRINT>")
    # One PublicKey per file is enough: the verifier gets the whole file, the pins get every primary.
    return [PublicKey(f, data, source) for f in fprs]


def pinned_key(distro: str) -> PublicKey | None:
    entry = PINNED.get(distro)
    if entry is None:
        return None
    fingerprint, name = entry
    raw = resources.files("vmcoreos.keys").joinpath(name).read_bytes()
    keys = load_key_bytes(raw, name)
    # A real check, not an assert: `python -O` would drop that, and the pin with it.
    if [k.fingerprint for k in keys] != [fingerprint]:
        raise ConfigError(
            f"the {name} shipped with vmcoreos is not the pinned key {fingerprint}; reinstall vmcoreos"
        )
    return keys[0]


def pinned_keys(distro: str) -> list[PublicKey]:
    """Every key pinned for distro: the vendor's one, or each Fedora release key (for_release picks one)."""
    if distro != "fedora-coreos":
        key = pinned_key(distro)
        return [key] if key is not None else []
    raw = resources.files("vmcoreos.keys").joinpath(FEDORA_KEYS_FILE).read_bytes()
    keys = load_key_bytes(raw, FEDORA_KEYS_FILE)
    if sorted(k.fingerprint for k in keys) != sorted(PINNED_FEDORA.values()):
        raise ConfigError(f"the {FEDORA_KEYS_FILE} shipped with vmcoreos is not the pinned Fedora keys; reinstall vmcoreos")
    return keys


def for_release(keys: list[PublicKey], distro: str, version: str) -> list[PublicKey]:
    """keys narrowed to what may sign this release: of the pinned Fedora keys only its major version's.

    The user's own keys (--trusted-key) are kept: that is how the next Fedora key is trusted before vmcoreos pins it.
    """
    if distro != "fedora-coreos":
        return keys
    major = version.split(".", 1)[0]
    wanted = PINNED_FEDORA.get(int(major)) if major.isdigit() else None
    pinned = set(PINNED_FEDORA.values())
    return [k for k in keys if k.fingerprint not in pinned or k.fingerprint == wanted]


def trusted_keys(entries, distro: str) -> list[PublicKey]:
    """The user's keys (TrustedKey entries) given for this distro; keys given for another distro are ignored."""
    keys: list[PublicKey] = []
    for entry in entries:
        if entry.distro != distro:
            continue
        path = entry.path
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read trusted key {path}: {exc.strerror}; check --trusted-key") from None
        keys.extend(load_key_bytes(raw, str(path)))
    return keys
