"""TLS to vCenter and its ESXi hosts: CA trust, a pinned thumbprint, or none (a lab), on sockets a deadline can cut."""

from __future__ import annotations

import hashlib
import ssl

from vmcoreos import watchdog
from vmcoreos.errors import ConfigError
from vmcoreos.connection import Connection
from vmcoreos.vsphere import probe
from vmcoreos.vsphere.probe import colons


class ThumbprintMismatch(ssl.SSLError):
    pass


class _WatchedSocket(ssl.SSLSocket):
    """A TLS socket to vCenter that the running phase's deadline can cut, from its handshake on (watchdog.py)."""

    def do_handshake(self, *args, **kwargs):
        watchdog.watch(self)
        super().do_handshake(*args, **kwargs)


class _PinnedSocket(_WatchedSocket):
    """Checks the peer certificate's thumbprint on every handshake, uploads included."""

    pin = ""

    def do_handshake(self, *args, **kwargs):
        super().do_handshake(*args, **kwargs)
        algo = {40: "sha1", 64: "sha256", 128: "sha512"}[len(self.pin)]
        seen = hashlib.new(algo, self.getpeercert(binary_form=True)).hexdigest()
        if seen != self.pin:
            raise ThumbprintMismatch(f"certificate {algo} thumbprint {colons(seen)} is not the pinned one")


def host_port(host: str, port: int) -> str:
    """host:port for a URL or a message, an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ssl_context(conn: Connection) -> ssl.SSLContext:
    if conn.thumbprint:
        return pinned_context(conn.thumbprint, "--thumbprint")
    if conn.insecure:
        return unverified_context()
    return ca_context(conn)


def unverified_context() -> ssl.SSLContext:
    ctx = probe.unverified_context()
    ctx.sslsocket_class = _WatchedSocket
    return ctx


def ca_context(conn: Connection) -> ssl.SSLContext:
    """Trust --ca-file's bundle, or the system's."""
    try:
        ctx = ssl.create_default_context(cafile=str(conn.ca_file) if conn.ca_file else None)
        ctx.sslsocket_class = _WatchedSocket
        return ctx
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot load CA file {conn.ca_file}: {exc}; pass a PEM certificate with --ca-file") from None


def pinned_context(thumbprint: str, source: str) -> ssl.SSLContext:
    """Trust exactly the certificate with this SHA-1/256/512 thumbprint (source names where it came from)."""
    # A pinned thumbprint replaces CA trust, as govc's known-hosts does. pyvmomi's own
    # pin is checked only when CA verification fails, so we check every handshake ourselves.
    pin = thumbprint.replace(":", "").lower()
    if len(pin) not in (40, 64, 128) or any(c not in "0123456789abcdef" for c in pin):
        raise ConfigError(f"{source} {thumbprint!r} is not a SHA-1/256/512 thumbprint (hex, colons allowed)")
    ctx = unverified_context()
    ctx.sslsocket_class = type("PinnedSocket", (_PinnedSocket,), {"pin": pin})
    return ctx
