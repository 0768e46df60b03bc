"""A vCenter session and property reads through the PropertyCollector.

All reads go through `retrieve`: one round trip for many properties of many
objects, instead of pyvmomi's one-call-per-attribute access.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass
from typing import Any, Iterable

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from vmcoreos.errors import ConfigError, VSphereError
from vmcoreos.settings import Connection

# Every SOAP call gets a socket timeout; long polls ask for less than this.
SOAP_TIMEOUT = 90
WAIT_POLL_SECONDS = 30


def ssl_context(conn: Connection) -> ssl.SSLContext:
    if conn.insecure or conn.thumbprint:
        # A pinned thumbprint replaces CA trust (as govc's known-hosts does); pyvmomi checks it.
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        return ssl.create_default_context(cafile=str(conn.ca_file) if conn.ca_file else None)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"cannot load CA file {conn.ca_file}: {exc}; pass a PEM certificate with --ca-file") from None


@dataclass
class Session:
    si: Any
    conn: Connection
    ssl: ssl.SSLContext

    @property
    def content(self):
        return self.si.content

    def close(self) -> None:
        try:
            Disconnect(self.si)
        except Exception:
            pass

    def retrieve(self, objs: Iterable, props: list[str], kind: type) -> dict[Any, dict[str, Any]]:
        """props of every object in objs, in one PropertyCollector call (paged)."""
        objs = list(objs)
        if not objs:
            return {}
        spec = vmodl.query.PropertyCollector.FilterSpec(
            objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=o, skip=False) for o in objs],
            propSet=[vmodl.query.PropertyCollector.PropertySpec(type=kind, pathSet=props, all=False)],
        )
        return self._collect(spec)

    def retrieve_all(self, root, kind: type, props: list[str]) -> dict[Any, dict[str, Any]]:
        """props of every object of a kind below root, through a container view."""
        view = self.content.viewManager.CreateContainerView(root, [kind], True)
        try:
            traversal = vmodl.query.PropertyCollector.TraversalSpec(
                name="view", path="view", skip=False, type=vim.view.ContainerView
            )
            spec = vmodl.query.PropertyCollector.FilterSpec(
                objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=view, skip=True, selectSet=[traversal])],
                propSet=[vmodl.query.PropertyCollector.PropertySpec(type=kind, pathSet=props, all=False)],
            )
            return self._collect(spec)
        finally:
            view.Destroy()

    def _collect(self, spec) -> dict[Any, dict[str, Any]]:
        pc = self.content.propertyCollector
        out: dict[Any, dict[str, Any]] = {}
        result = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
        while result is not None:
            for obj in result.objects:
                out[obj.obj] = {p.name: p.val for p in (obj.propSet or [])}
            if not result.token:
                break
            result = pc.ContinueRetrievePropertiesEx(result.token)
        return out


def connect(conn: Connection) -> Session:
    ctx = ssl_context(conn)
    kwargs: dict[str, Any] = dict(
        host=conn.host,
        port=conn.port,
        user=conn.username,
        pwd=str(conn.password),
        sslContext=ctx,
        httpConnectionTimeout=SOAP_TIMEOUT,
    )
    if conn.thumbprint:
        kwargs["thumbprint"] = conn.thumbprint.replace(":", "").lower()
    where = f"{conn.host}:{conn.port}"
    try:
        si = SmartConnect(**kwargs)
    except vim.fault.InvalidLogin:
        # One attempt only: retrying a wrong password is how accounts get locked.
        raise VSphereError(
            f"vCenter {where} rejected the login for {conn.username!r};"
            " check VMCOREOS_USERNAME and VMCOREOS_PASSWORD (or --password-file)"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise VSphereError(
            f"vCenter {where}'s TLS certificate is not trusted ({exc.verify_message});"
            " pass --ca-file with its CA, pin it with --thumbprint, or use --insecure in a lab"
        ) from None
    except vim.fault.HostConnectFault as exc:
        raise VSphereError(f"vCenter {where}: {exc.msg}") from None
    except (ConnectionRefusedError, socket.gaierror, socket.timeout, TimeoutError, OSError,
            http.client.HTTPException) as exc:
        reason = _net_reason(exc)
        if "thumbprint" in str(exc).lower():
            raise VSphereError(
                f"vCenter {where}'s certificate does not match the pinned thumbprint; check --thumbprint"
            ) from None
        raise VSphereError(f"cannot reach vCenter at {where}: {reason}; check --url and the network") from None
    except vmodl.MethodFault as exc:
        raise VSphereError(f"vCenter {where} refused the session: {exc.msg}") from None
    except Exception as exc:  # pyvmomi raises plain Exceptions for some protocol failures
        if "thumbprint" in str(exc).lower():
            raise VSphereError(
                f"vCenter {where}'s certificate does not match the pinned thumbprint; check --thumbprint"
            ) from None
        raise VSphereError(f"cannot open a session with vCenter at {where}: {exc}") from None
    return Session(si=si, conn=conn, ssl=ctx)


def _net_reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return str(exc) or type(exc).__name__
