"""Encodings of guestinfo config values, as coreos-cloudinit and Ignition decode them.

Both decoders accept the same table (coreos-cloudinit config/decode.go); we
write only the two the docs promise, and decode the full table so tests and
`vmcoreos render` can read back what a guest would.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import zlib

ENCODINGS = ("gzip+base64", "base64")
_DECODERS = {
    "": "raw",
    "b64": "base64",
    "base64": "base64",
    "gz": "gzip",
    "gzip": "gzip",
    "gz+base64": "gzip+base64",
    "gzip+base64": "gzip+base64",
    "gz+b64": "gzip+base64",
    "gzip+b64": "gzip+base64",
}

# Every name the guests accept (coreos-cloudinit config/decode.go, Ignition's decodeConfig).
DECODERS = tuple(_DECODERS)


class DecodeError(ValueError):
    pass


def encode(data: bytes, encoding: str = "gzip+base64") -> str:
    if encoding == "base64":
        return base64.b64encode(data).decode("ascii")
    if encoding == "gzip+base64":
        # mtime=0 keeps the output, and so the node's config digest, stable across runs.
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
            gz.write(data)
        return base64.b64encode(buf.getvalue()).decode("ascii")
    raise ValueError(f"unsupported encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")


# Far above any node config; a few KiB of gzip can otherwise expand to gigabytes in memory.
MAX_DECODED = 64 << 20


def gunzip(data: bytes, limit: int = MAX_DECODED) -> bytes:
    """gzip.decompress (every member, as Go's reader does) that stops at `limit` output bytes."""
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(wbits=31)
        out += inflater.decompress(data, limit + 1 - len(out))
        if len(out) > limit:
            raise DecodeError(f"decodes to more than {limit} bytes; that is not a node config")
        if not inflater.eof:
            if inflater.unconsumed_tail:
                raise DecodeError(f"decodes to more than {limit} bytes; that is not a node config")
            raise EOFError("compressed data ended before the end-of-stream marker")
        data = inflater.unused_data
    return bytes(out)


def decode(value: str, encoding: str) -> bytes:
    kind = _DECODERS.get(encoding)
    if kind is None:
        raise DecodeError(f'Unsupported encoding "{encoding}"')
    raw = value.encode("utf-8", "surrogateescape")
    try:
        if kind in ("base64", "gzip+base64"):
            # Go's StdEncoding skips CR and LF (wrapped base64 in a YAML block) but nothing else.
            raw = base64.b64decode(raw.replace(b"\r", b"").replace(b"\n", b""), validate=True)
        if kind in ("gzip", "gzip+base64"):
            raw = gunzip(raw)
    except (binascii.Error, OSError, EOFError, zlib.error) as exc:
        raise DecodeError(f"cannot decode as {encoding}: {exc}") from None
    return raw
