"""When an ESXi host's certificate may be trusted by the lease's thumbprint instead, as govc decides it.

govmomi (vim25/soap/client.go dialTLSContext) falls back to the thumbprint only when verification
failed for an unknown authority (x509.UnknownAuthorityError) or another name (x509.HostnameError);
any other failure, an expired certificate first of all, stays a failure. Go checks the validity
period even of a certificate from an unknown issuer, so a pinned certificate must be within it too.
"""

from __future__ import annotations

from datetime import datetime, timezone

# OpenSSL's X509_V_ERR_* codes for "unknown issuer" and "another name".
UNKNOWN_ISSUER = {
    2,  # UNABLE_TO_GET_ISSUER_CERT
    18,  # DEPTH_ZERO_SELF_SIGNED_CERT
    19,  # SELF_SIGNED_CERT_IN_CHAIN
    20,  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21,  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
}
NAME_MISMATCH = {62, 64}  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
PIN_FALLBACK = UNKNOWN_ISSUER | NAME_MISMATCH


def may_pin(verify_code: int | None) -> bool:
    return verify_code in PIN_FALLBACK


def _tlv(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start, end) of the DER element at `at`."""
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(der[at : at + n], "big")
        at += n
    if at + length > len(der):
        raise ValueError("truncated certificate")
    return tag, at, at + length


def _time(tag: int, text: str) -> datetime:
    fmt = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"  # UTCTime or GeneralizedTime
    return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)


def validity(der: bytes) -> tuple[datetime, datetime]:
    """notBefore and notAfter of an X.509 certificate (DER); ValueError if it is not one."""
    try:
        _, start, _ = _tlv(der, 0)  # Certificate
        _, at, _ = _tlv(der, start)  # TBSCertificate
        if der[at] == 0xA0:  # [0] version
            at = _tlv(der, at)[2]
        for _ in range(3):  # serialNumber, signature, issuer
            at = _tlv(der, at)[2]
        _, at, _ = _tlv(der, at)  # validity
        tag1, s1, e1 = _tlv(der, at)
        tag2, s2, e2 = _tlv(der, e1)
        return _time(tag1, der[s1:e1].decode("ascii")), _time(tag2, der[s2:e2].decode("ascii"))
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"not an X.509 certificate ({exc})") from None


def outside_validity(der: bytes, now: datetime | None = None) -> str | None:
    """Why the certificate is not valid now ("expired ...", "not valid before ..."), or None."""
    try:
        not_before, not_after = validity(der)
    except ValueError as exc:
        return str(exc)
    now = now or datetime.now(timezone.utc)
    if now > not_after:
        return f"certificate expired {not_after:%Y-%m-%d %H:%M} UTC"
    if now < not_before:
        return f"certificate not valid before {not_before:%Y-%m-%d %H:%M} UTC"
    return None
