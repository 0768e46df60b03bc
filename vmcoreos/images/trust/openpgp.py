"""Reading OpenPGP packets: enough to pin keys and to know, before any image byte, who signed and how.

Nothing here checks a signature cryptographically; gpgv and sqv do that.
What this reads decides three things around them: the primary fingerprints
we pin (keys.py), which verifier can judge a signature the way we need
(signature.py), and what the verdict reports (which subkey signed, whether
it has expired or been revoked since). A wrong answer here can only make us
refuse a good image or misreport a note, never accept a bad one: the
verifier's own check still decides, and a signature file that is not exactly
one readable signature packet (two packets, junk before the armor) is refused
before any verifier sees it (signature.py), whose own parser might read it
differently.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

# RFC 4880 §9.4: the hash algorithm IDs; SHA-1 (2) and weaker are what Sequoia's policy refuses.
SHA2 = frozenset({8, 9, 10, 11})  # SHA-256, SHA-384, SHA-512, SHA-224

_SIGNATURE, _PUBLIC_KEY, _PUBLIC_SUBKEY = 2, 6, 14
_SUB_CREATED, _SUB_KEY_EXPIRES, _SUB_ISSUER, _SUB_ISSUER_FPR = 2, 9, 16, 33
_SUBKEY_BINDING, _SUBKEY_REVOCATION, _KEY_REVOCATION = 0x18, 0x28, 0x20
_SELF_SIGS = frozenset({0x10, 0x11, 0x12, 0x13, 0x1F})  # user-ID certifications and direct-key signatures


def packets(data: bytes):
    """(tag, body) for each OpenPGP packet (RFC 4880 §4.2, old and new formats); ValueError for anything else."""
    i = 0
    while i < len(data):
        try:
            tag, length, i = _packet_header(data, i)
        except IndexError:
            raise ValueError("truncated packet header") from None
        if i + length > len(data):  # also a length field cut short: its body would start past the end
            raise ValueError("truncated packet")
        yield tag, data[i : i + length]
        i += length


def _packet_header(data: bytes, i: int) -> tuple[int, int, int]:
    """(tag, body length, offset of the body) of the packet at i."""
    ctb = data[i]
    if not ctb & 0x80:
        raise ValueError("not an OpenPGP packet")
    if ctb & 0x40:
        first = data[i + 1]
        if first < 192:
            return ctb & 0x3F, first, i + 2
        if first < 224:
            return ctb & 0x3F, ((first - 192) << 8) + data[i + 2] + 192, i + 3
        if first == 255:
            return ctb & 0x3F, int.from_bytes(data[i + 2 : i + 6], "big"), i + 6
        raise ValueError("partial body lengths are not used in keys or signatures")
    size = {0: 1, 1: 2, 2: 4}.get(ctb & 3)
    if size is None:
        raise ValueError("indeterminate packet length")
    return (ctb >> 2) & 0x0F, int.from_bytes(data[i + 1 : i + 1 + size], "big"), i + 1 + size


def v4_fingerprint(body: bytes) -> str:
    """A version 4 key packet's fingerprint (RFC 4880 §12.2)."""
    if not body or body[0] != 4:
        raise ValueError(f"OpenPGP key version {body[0] if body else '?'} is not supported")
    return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper()


def _subpackets(area: bytes) -> dict[int, bytes]:
    """type -> body of the first subpacket of each type (RFC 4880 §5.2.3.1); the critical bit dropped."""
    found: dict[int, bytes] = {}
    i = 0
    while i < len(area):
        first = area[i]
        if first < 192:
            length, i = first, i + 1
        elif first < 255:
            if i + 1 >= len(area):
                raise ValueError("truncated signature subpacket")
            length, i = ((first - 192) << 8) + area[i + 1] + 192, i + 2
        else:  # cut short, i passes the end: the check below refuses it
            length, i = int.from_bytes(area[i + 1 : i + 5], "big"), i + 5
        if length == 0 or i + length > len(area):
            raise ValueError("truncated signature subpacket")
        found.setdefault(area[i] & 0x7F, area[i + 1 : i + length])
        i += length
    return found


@dataclass(frozen=True)
class SignatureInfo:
    kind: int
    hash_algo: int
    created: int | None
    issuer_fingerprint: str | None  # from the hashed area only: covered by the signature itself
    issuer_keyid: str | None
    key_expires_after: int | None  # seconds after the key's creation; 0 or None: never


def read_signature_body(body: bytes) -> SignatureInfo:
    if len(body) < 6 or body[0] != 4:
        raise ValueError(f"signature version {body[0] if body else '?'} is not supported (only version 4)")
    kind, hash_algo = body[1], body[3]
    hashed_len = int.from_bytes(body[4:6], "big")
    hashed = _subpackets(body[6 : 6 + hashed_len])
    rest = body[6 + hashed_len :]
    if len(rest) < 2:
        raise ValueError("truncated signature")
    unhashed_len = int.from_bytes(rest[:2], "big")
    unhashed = _subpackets(rest[2 : 2 + unhashed_len])
    created = int.from_bytes(hashed[_SUB_CREATED], "big") if len(hashed.get(_SUB_CREATED, b"")) == 4 else None
    fpr = hashed.get(_SUB_ISSUER_FPR, b"")
    issuer_fpr = fpr[1:].hex().upper() if len(fpr) == 21 and fpr[0] == 4 else None
    keyid = hashed.get(_SUB_ISSUER) or unhashed.get(_SUB_ISSUER)
    expires = hashed.get(_SUB_KEY_EXPIRES)
    return SignatureInfo(
        kind, hash_algo, created, issuer_fpr,
        keyid.hex().upper() if keyid and len(keyid) == 8 else None,
        int.from_bytes(expires, "big") if expires and len(expires) == 4 else None,
    )


def read_detached_signature(data: bytes) -> SignatureInfo:
    """The one signature packet of a binary detached signature (a release server's .sig)."""
    found = [body for tag, body in packets(data) if tag == _SIGNATURE]
    if len(found) != 1:
        raise ValueError(f"{len(found)} signatures where one was expected")
    info = read_signature_body(found[0])
    if info.kind not in (0x00, 0x01):
        raise ValueError(f"signature type {info.kind:#04x} is not a signature over a file")
    return info


@dataclass(frozen=True)
class SigningKey:
    """A key that can have made a signature: the primary or one of its subkeys, with its self-signatures."""

    fingerprint: str
    primary: str
    created: int
    expires: int | None  # epoch, from the newest binding in force; None: never
    revoked: bool
    binding_hashes: frozenset[int]  # hash algorithms of the self-signatures its validity rests on

    @property
    def keyid(self) -> str:
        return self.fingerprint[-16:]

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and self.expires <= (time.time() if now is None else now)


def signing_keys(data: bytes) -> list[SigningKey]:
    """Every primary key and subkey in a keyring, each with the self-signatures that follow it."""
    # A transferable key is the primary, its revocations and user IDs with their self-signatures,
    # then each subkey with its bindings (RFC 4880 §11.1): a signature belongs to the key before it.
    groups: list[tuple[bytes, str, list[SignatureInfo]]] = []  # (key body, primary fpr, sigs on it)
    primary = None
    for tag, body in packets(data):
        if tag == _PUBLIC_KEY:
            primary = v4_fingerprint(body)
            groups.append((body, primary, []))
        elif tag == _PUBLIC_SUBKEY and primary is not None:
            groups.append((body, primary, []))
        elif tag == _SIGNATURE and groups:
            try:
                groups[-1][2].append(read_signature_body(body))
            except ValueError:
                continue  # a signature we cannot read vouches for nothing; the verifier decides alone
    found = []
    for body, owner, sigs in groups:
        fpr = v4_fingerprint(body)
        created = int.from_bytes(body[1:5], "big")
        is_primary = fpr == owner
        binding_kinds = _SELF_SIGS if is_primary else {_SUBKEY_BINDING}
        revoked_kind = _KEY_REVOCATION if is_primary else _SUBKEY_REVOCATION
        bindings = [s for s in sigs if s.kind in binding_kinds]
        newest = max(bindings, key=lambda s: s.created or 0, default=None)
        after = newest.key_expires_after if newest else None
        found.append(SigningKey(
            fpr, owner, created, created + after if after else None,
            any(s.kind == revoked_kind for s in sigs),
            frozenset(s.hash_algo for s in bindings),
        ))
    # A subkey's validity also rests on its primary's self-signatures.
    by_fpr = {k.fingerprint: k for k in found}
    return [
        k if k.fingerprint == k.primary
        else SigningKey(k.fingerprint, k.primary, k.created, k.expires, k.revoked,
                        k.binding_hashes | by_fpr[k.primary].binding_hashes)
        for k in found
    ]


def signer_of(info: SignatureInfo, keyring: bytes) -> SigningKey | None:
    """The key in keyring the signature names as its issuer, or None if it names none there."""
    for key in signing_keys(keyring):
        if info.issuer_fingerprint is not None:
            if key.fingerprint == info.issuer_fingerprint:
                return key
        elif info.issuer_keyid is not None and key.keyid == info.issuer_keyid:
            return key
    return None
