"""A vCenter session and property reads through the PropertyCollector.

All reads go through `retrieve`: one round trip for many properties of many
objects, instead of pyvmomi's one-call-per-attribute access.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import urlsplit

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from vmcoreos import __version__, watchdog
from vmcoreos.connection import Connection
from vmcoreos.environment import ENV_API_TIMEOUT, api_timeout
from vmcoreos.errors import VSphereError
from vmcoreos.vsphere.faults import ConnectionLost, MissingProperty, permission_denied  # noqa: F401 (re-exported)
from vmcoreos.vsphere import probe
from vmcoreos.text import reason
from vmcoreos.vsphere.tls import ThumbprintMismatch, host_port, ssl_context




def poll_seconds() -> int:
    # A long poll must come back well before the socket timeout would call it a stall.
    return max(1, min(WAIT_POLL_SECONDS, int(api_timeout() / 3)))

# Every SOAP call gets a socket timeout (VMCOREOS_API_TIMEOUT, environment.api_timeout); long polls ask for less.
WAIT_POLL_SECONDS = 30
# Wall-clock limits, in socket timeouts: one SOAP call (its reads trickling or not), and connecting
# (TCP, TLS handshake, pyvmomi's API version probe, RetrieveServiceContent and Login).
CALL_LIMIT = 2
CONNECT_CALLS = 3

# Calls that read or only renew state: safe to send again after the connection dropped.
# Anything else (tasks, ImportVApp, lease completion, Login) is never resent blindly.
IDEMPOTENT = frozenset({
    "RetrievePropertiesEx", "ContinueRetrievePropertiesEx", "RetrieveProperties", "WaitForUpdatesEx",
    "CreateContainerView", "CreatePropertyCollector", "CreateFilter", "DestroyView", "DestroyPropertyCollector",
    "DestroyPropertyFilter", "HttpNfcLeaseProgress", "CreateImportSpec", "CurrentTime", "RetrieveServiceContent",
    "FindByInventoryPath", "CancelTask", "Fetch", "QueryEvents",
})
RESENDS = 2
# pyvmomi keeps idle sockets for 900 s, as long as vCenter's own idle timeout; load balancers and
# proxies in front of vCenter cut idle connections much sooner (nginx 75 s, ALB 60 s, HAProxy often
# less), and a non-idempotent call sent on such a socket is "connection lost, state unknown" even
# though it never left. Sockets idle this long are closed instead of reused.
POOL_IDLE_SECONDS = 30
_DROPPED = (ConnectionError, http.client.HTTPException, ssl.SSLError)
USER_AGENT = f"vmcoreos/{__version__}"


@dataclass
class Session:
    si: Any
    conn: Connection
    ssl: ssl.SSLContext

    _content: Any = None
    # Bumped by every re-login: a call that failed under an older session only needs sending again.
    generation: int = 0
    _login_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    closed: bool = False
    # Container views by (root, kind, recursive), kept for the session: vCenter keeps a view's
    # contents current as the inventory changes, so one view serves every later listing of the same
    # objects (a view per listing cost a create and a destroy each). They go with the session's logout.
    _views: dict = field(default_factory=dict, repr=False)
    _views_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def content(self):
        # Fetched once: pyvmomi's si.content would cost a round trip on every access.
        if self._content is None:
            self._content = self.si.RetrieveContent()
        return self._content

    @property
    def vcenter_id(self) -> str:
        """Who this vCenter is, whatever name it was reached by (host:port only if it will not say)."""
        return getattr(self.content.about, "instanceUuid", None) or f"{self.conn.host}:{self.conn.port}"

    def close(self) -> None:
        self.closed = True
        try:
            Disconnect(self.si)
        except Exception:
            pass

    def relogin(self, seen: int | None = None) -> bool:
        """vCenter dropped our session (idle timeout, restart): log in again on the same connection.

        seen is the generation the failed call was sent under. Threads whose calls all
        failed with the same session share one login: the first logs in, the others wait
        for it and find the generation moved on (each login would leave a session behind).
        Returns whether this call logged in.
        """
        if self.closed:
            # A worker thread still calling after an interrupt's logout must not open a session nobody ends.
            raise VSphereError("the vCenter session was closed; not logging in again")
        with self._login_lock:
            if seen is not None and seen != self.generation:
                return False
            try:
                self.content.sessionManager.Login(self.conn.username, str(self.conn.password))
            except vim.fault.InvalidLogin:
                raise VSphereError(
                    f"vCenter ended the session and now rejects the login for {self.conn.username!r}; check the password"
                ) from None
            self.generation += 1
            return True

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

    def retrieve_all(self, root, kind: type, props: list[str], *, recursive: bool = True) -> dict[Any, dict[str, Any]]:
        """props of every object of a kind below root (only its direct children unless recursive), through a container view."""
        for attempt in (1, 2):
            view = self._view(root, kind, recursive)
            traversal = vmodl.query.PropertyCollector.TraversalSpec(
                name="view", path="view", skip=False, type=vim.view.ContainerView
            )
            spec = vmodl.query.PropertyCollector.FilterSpec(
                objectSet=[vmodl.query.PropertyCollector.ObjectSpec(obj=view, skip=True, selectSet=[traversal])],
                propSet=[vmodl.query.PropertyCollector.PropertySpec(type=kind, pathSet=props, all=False)],
            )
            try:
                return self._collect(spec)
            except vmodl.fault.ManagedObjectNotFound as exc:
                # A view belongs to the session that made it: one that ended in between took it along.
                if attempt == 2 or exc.obj != view:
                    raise
                self._forget_view(root, kind, recursive, view)

    def _view(self, root, kind: type, recursive: bool):
        key = (root._moId, kind, recursive)
        with self._views_lock:
            if key not in self._views:
                self._views[key] = self.content.viewManager.CreateContainerView(root, [kind], recursive)
            return self._views[key]

    def _forget_view(self, root, kind: type, recursive: bool, view) -> None:
        with self._views_lock:
            if self._views.get((root._moId, kind, recursive)) is view:
                del self._views[(root._moId, kind, recursive)]

    def _collect(self, spec) -> dict[Any, dict[str, Any]]:
        for attempt in (1, 2):
            generation = self.generation
            try:
                return self._collect_once(spec)
            except MissingProperty as exc:
                # A NotAuthenticated per property (the simulator's way) is an expired session too.
                if attempt == 2 or not isinstance(exc.fault, vim.fault.NotAuthenticated):
                    raise
                self.relogin(generation)

    def _collect_once(self, spec) -> dict[Any, dict[str, Any]]:
        pc = self.content.propertyCollector
        out: dict[Any, dict[str, Any]] = {}
        result = pc.RetrievePropertiesEx([spec], vmodl.query.PropertyCollector.RetrieveOptions())
        while result is not None:
            for obj in result.objects:
                if obj.missingSet:
                    raise MissingProperty(obj.obj, obj.missingSet[0])
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
        # --url's path: a vCenter behind a reverse proxy may serve its SDK somewhere other than /sdk.
        path=urlsplit(conn.url).path or "/sdk",
        user=conn.username,
        pwd=str(conn.password),
        sslContext=ctx,
        httpConnectionTimeout=api_timeout(),
        connectionPoolTimeout=POOL_IDLE_SECONDS,
        # Lets vCenter's logs (and the benchmark's request counts) tell our calls apart.
        customHeaders={"User-Agent": USER_AGENT},
    )
    where = host_port(conn.host, conn.port)
    limit = CONNECT_CALLS * api_timeout()
    # pyvmomi's API version probe opens connections without a timeout: the default gives them one.
    default = socket.getdefaulttimeout()
    socket.setdefaulttimeout(api_timeout())
    try:
        with watchdog.deadline(limit, "connect") as phase:
            try:
                si = _smart_connect(kwargs, conn, where)
            except VSphereError:
                if phase.expired:
                    raise VSphereError(
                        f"vCenter {where} did not finish the connection, TLS handshake, API version probe and"
                        f" login within {limit:.0f}s; check --url and that vCenter is up"
                        f" (raise {ENV_API_TIMEOUT} if it is just slow)"
                    ) from None
                raise
    finally:
        socket.setdefaulttimeout(default)
    session = Session(si=si, conn=conn, ssl=ctx)
    _guard(session)
    return session


def _smart_connect(kwargs: dict, conn: Connection, where: str):
    """SmartConnect, its failures as one-line VSphereErrors."""
    try:
        return SmartConnect(**kwargs)
    except vim.fault.InvalidLogin:
        # One attempt only: retrying a wrong password is how accounts get locked.
        raise VSphereError(
            f"vCenter {where} rejected the login for {conn.username!r};"
            " check VMCOREOS_USERNAME and VMCOREOS_PASSWORD (or --password-file)"
        ) from None
    except ThumbprintMismatch as exc:
        raise VSphereError(f"vCenter {where}: {exc.args[0]}; check --thumbprint (a different server answered)") from None
    except ssl.SSLCertVerificationError as exc:
        seen = probe.sha256_or_none(conn.host, conn.port)
        pin = f"pin it with --thumbprint {seen} if that is your vCenter's" if seen else "pin it with --thumbprint"
        raise VSphereError(
            f"vCenter {where}'s TLS certificate is not trusted ({exc.verify_message}); its SHA-256 thumbprint is"
            f" {seen or 'unknown (it could not be read again)'}: pass --ca-file with its CA, {pin}, or use --insecure"
            " in a lab"
        ) from None
    except vim.fault.HostConnectFault as exc:
        raise VSphereError(f"vCenter {where}: {exc.msg}") from None
    except (socket.timeout, TimeoutError):
        raise VSphereError(
            f"vCenter {where} did not answer within {api_timeout():.0f}s while connecting (TCP, TLS handshake,"
            f" API version probe, login); check --url and that vCenter is up (raise {ENV_API_TIMEOUT} if it is slow)"
        ) from None
    except (ConnectionRefusedError, socket.gaierror, OSError,
            http.client.HTTPException) as exc:
        why = reason(exc)
        if "thumbprint" in str(exc).lower():
            raise VSphereError(
                f"vCenter {where}'s certificate does not match the pinned thumbprint; check --thumbprint"
            ) from None
        raise VSphereError(f"cannot reach vCenter at {where}: {why}; check --url and the network") from None
    except vmodl.MethodFault as exc:
        raise VSphereError(f"vCenter {where} refused the session: {exc.msg}") from None
    except Exception as exc:  # pyvmomi raises plain Exceptions for some protocol failures
        if "is not a VIM server" in str(exc):
            # The server answered (a refused or dead one is an OSError above): the path is what is wrong.
            raise VSphereError(_wrong_path(conn, where, kwargs["path"], kwargs["sslContext"])) from None
        if "thumbprint" in str(exc).lower():
            raise VSphereError(
                f"vCenter {where}'s certificate does not match the pinned thumbprint; check --thumbprint"
            ) from None
        raise VSphereError(f"cannot open a session with vCenter at {where}: {exc}") from None


def _wrong_path(conn: Connection, where: str, path: str, ctx: ssl.SSLContext) -> str:
    said = f"{where} answered, but serves no vSphere API at {path}"
    if path.rstrip("/") != "/sdk" and probe.serves_vim(conn.host, conn.port, "/sdk", ctx):
        return f"{said} (it does at /sdk); fix the path in --url or VMCOREOS_URL: https://{where}/sdk"
    return f"{said}; check the path in --url or VMCOREOS_URL (vCenter serves it at /sdk) and that {where} is a vCenter"


def _guard(session: Session) -> None:
    """Wrap the SOAP stub so every call gets the same treatment.

    * a dropped connection during a read-only call is resent (RESENDS times);
      during any other call it becomes ConnectionLost, for the caller to check
      what happened before trying again;
    * no call goes out on a pooled socket the peer has already closed (_live_connections);
    * an expired session (NotAuthenticated) is logged in again, once for all
      threads (Session.relogin), and the call repeated;
    * a call that times out names itself, so a stalled vCenter reads as one.
    """
    stub = session.si._stub
    invoke, access = stub.InvokeMethod, stub.InvokeAccessor
    timeout = api_timeout()
    where = host_port(session.conn.host, session.conn.port)
    _live_connections(stub)

    def call(name: str, fn, *args):
        logged_in, waited = False, 0
        resent = 0
        while True:
            generation = session.generation
            try:
                with watchdog.deadline(CALL_LIMIT * timeout, name) as phase:
                    try:
                        return fn(*args)
                    except Exception:
                        if phase.expired:
                            raise TimeoutError from None
                        raise
            except vim.fault.NotAuthenticated:
                # Refused again after this call's own login (or after a few other threads'):
                # that is a real refusal, not an expired session.
                if logged_in or waited >= 3 or name in ("Login", "Logout"):
                    raise
                if session.relogin(generation):
                    logged_in = True
                else:
                    waited += 1
            except vim.fault.NoPermission as exc:  # after NotAuthenticated, its subclass
                raise permission_denied(session, exc, name) from None
            except (TimeoutError, socket.timeout):
                raise VSphereError(
                    f"vCenter {where} did not answer {name} within {timeout:.0f}s (a read) or"
                    f" {CALL_LIMIT * timeout:.0f}s (the whole call); it is stalled or overloaded"
                    f" (raise {ENV_API_TIMEOUT} if it is just slow)"
                ) from None
            except _DROPPED as exc:
                if name not in IDEMPOTENT:
                    raise ConnectionLost(name, reason(exc)) from None
                if resent >= RESENDS:
                    raise VSphereError(
                        f"the connection to vCenter kept dropping during {name} ({reason(exc)});"
                        " check the network to vCenter"
                    ) from None
                resent += 1
                time.sleep(0.2 * resent)

    stub.InvokeMethod = lambda mo, info, args, outerStub=None: call(
        info.wsdlName, invoke, mo, info, args, outerStub
    )
    stub.InvokeAccessor = lambda mo, info: call("Fetch", access, mo, info)


def _live_connections(stub) -> None:
    """Make the stub's pool hand out only sockets the peer has not closed.

    An idle keep-alive socket has nothing to read; if it is readable, vCenter or a
    proxy in between has closed or reset it (urllib3 checks its pool the same way).
    A cut that sent nothing (a silent load balancer) is what POOL_IDLE_SECONDS is for.
    """
    get, give_back = stub.GetConnection, stub.ReturnConnection

    def get_live():
        while True:
            conn = get()
            watchdog.watch(conn)  # the calling phase's deadline cuts it (its .sock, once connected)
            # Only pooled sockets: a fresh TLS 1.3 one may still be receiving its session tickets.
            if not getattr(conn, "_vmcoreos_pooled", False) or not _peer_closed(conn):
                return conn
            conn.close()

    def returned(conn):
        conn._vmcoreos_pooled = True
        give_back(conn)

    stub.GetConnection, stub.ReturnConnection = get_live, returned


def _peer_closed(conn) -> bool:
    sock = getattr(conn, "sock", None)
    if sock is None:  # not connected yet: http.client connects on the first request
        return False
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):  # closed under us
        return True
