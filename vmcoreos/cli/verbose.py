"""-v/--verbose: one line on stderr per SOAP call and per HTTP request, naming only methods and hosts.

Never bodies, headers, query strings or credentials: a Login call's
arguments hold the vCenter password and a download URL's query may hold
a token, so the lines are built from the method name, the managed
object's type and id, the host and the path alone.
"""

from __future__ import annotations

import functools
import logging
import sys
import time

_installed = False


class _HttpSummary(logging.Filter):
    """urllib3's request line ('scheme://host:port "METHOD /path?query HTTP/1.1" status length') without the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != '%s://%s:%s "%s %s %s" %s %s' or len(record.args or ()) != 8:
            return False  # connection chatter: not a request summary
        scheme, host, port, method, url, _version, status, _length = record.args
        record.msg, record.args = "HTTP %s %s://%s:%s%s -> %s", (
            method, scheme, _host(host), port, str(url).split("?", 1)[0], status)
        return True


def _host(netloc) -> str:
    return str(netloc).rsplit("@", 1)[-1]  # never a user:password part


def _line(message: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} vmcoreos: {message}\n")
    sys.stderr.flush()


class _Stderr(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        _line(record.getMessage())


def enable() -> None:
    """Log SOAP method names (pyVmomi) and HTTP request lines (urllib3, under requests) on stderr."""
    global _installed
    if _installed:
        return
    _installed = True
    http = logging.getLogger("urllib3.connectionpool")
    handler = _Stderr()
    handler.addFilter(_HttpSummary())
    http.addHandler(handler)
    http.setLevel(logging.DEBUG)
    http.propagate = False

    from pyVmomi import SoapAdapter

    invoke = SoapAdapter.SoapStubAdapter.InvokeMethod

    @functools.wraps(invoke)
    def logged(self, mo, info, args, outerStub=None):
        # info.wsdlName is the method (Login, RetrievePropertiesEx); args are never shown.
        _line(f"SOAP {info.wsdlName} on {getattr(mo, '_wsdlName', type(mo).__name__)}:{getattr(mo, '_moId', '?')}"
              f" at {_host(getattr(self, 'host', '?'))}")
        return invoke(self, mo, info, args, outerStub)

    SoapAdapter.SoapStubAdapter.InvokeMethod = logged
