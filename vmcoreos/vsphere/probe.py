"""What a server shows before any login: its certificate's thumbprint, and whether a path serves the VIM API.

Both only explain a refused connection (or prepare a --thumbprint pin); the
certificate is read without trusting it and nothing is sent but a GET of a
public document, so no credential ever goes to a server not yet trusted.
"""

from __future__ import annotations

import hashlib
import http.client
import socket
import ssl


def unverified_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def colons(hexdigest: str) -> str:
    return ":".join(hexdigest[i : i + 2] for i in range(0, len(hexdigest), 2)).upper()


def thumbprints(host: str, port: int, timeout: float = 10.0) -> dict[str, str]:
    """{"sha256": "AB:…", "sha1": "CD:…"} of the certificate host:port presents (OSError when it cannot be read)."""
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with unverified_context().wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    if not der:
        raise OSError(f"{host}:{port} presented no certificate")
    return {algo: colons(hashlib.new(algo, der).hexdigest()) for algo in ("sha256", "sha1")}


def sha256_or_none(host: str, port: int, timeout: float = 10.0) -> str | None:
    try:
        return thumbprints(host, port, timeout)["sha256"]
    except (OSError, ssl.SSLError, ValueError):
        return None


def serves_vim(host: str, port: int, path: str, context: ssl.SSLContext, timeout: float = 10.0) -> bool:
    """Whether path/vimServiceVersions.xml answers 200, as pyVmomi asks before anything else."""
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
    try:
        conn.request("GET", path.rstrip("/") + "/vimServiceVersions.xml")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
