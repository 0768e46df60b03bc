"""Text every part of vmcoreos shows the same way: URLs without credentials, and why a connection failed."""

from __future__ import annotations

import re
import socket
from urllib.parse import urlsplit

# user:password@ after a scheme, anywhere in a text, up to the last @ of the word (a password may hold
# '/' or '@'); found without parsing the rest, so a bad port or a broken URL cannot stop it.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)\S*@")


def redact(text: str, mask: str = "") -> str:
    """text with the user:password of every URL in it removed, or replaced by `mask` (the CLI shows '***')."""
    return _USERINFO.sub(lambda m: m.group(1) + (f"{mask}@" if mask else ""), text)


def origin(url: str) -> str:
    """scheme://host[:port] of url: no credentials, and no path (a discovery URL's path is its token)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def reason(exc: BaseException) -> str:
    """A few words on why a connection or transfer failed, for "cannot reach X (<reason>)" messages.

    Socket errors are told by type; requests and urllib3 wrap them in text,
    so theirs are told by what the text says. Credentials never pass.
    """
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10
        return "timed out"
    text = redact(str(exc))
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower() or _is_library_timeout(exc):
        return "timed out"
    if "Name or service not known" in text or "nodename nor servname" in text or "NameResolution" in text:
        return "host name not found"
    if "IncompleteRead" in text or "Connection broken" in text or "RemoteDisconnected" in text:
        return "connection dropped"
    if "Connection reset" in text:
        return "connection reset"
    # requests' texts carry long pool reprs in parentheses; the words before them say it.
    return text.split("(")[0].strip(" :") or type(exc).__name__


def _is_library_timeout(exc: BaseException) -> bool:
    import requests
    import urllib3

    return isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError))
