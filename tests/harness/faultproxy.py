"""A fault-injecting TCP proxy: how the tool behaves when the network misbehaves.

``FaultProxy`` listens on 127.0.0.1:<free port> and relays every connection,
byte for byte, to one upstream address. It works at the TCP level and never
terminates TLS, so it sits in front of the HTTPS vCenter simulator as well as
in front of the plain-HTTP release server. On that stream it can:

* ``reset_after(n, direction)`` forward n bytes of a connection in one direction,
  then reset both sides (RST, SO_LINGER 0) -- "connection reset by peer", a short read.
  It waits (up to 1 s) for the peer to acknowledge those n bytes first, so the client
  really holds exactly n bytes: a resume can be checked to the byte;
* ``stall(seconds, after_bytes, direction)`` stop forwarding that direction for a
  while (``seconds=None``: hold it until the client gives up or ``clear()``/``stop()``);
* ``refuse(seconds, times, mode)`` turn new connections away: "reset" (accept, RST),
  "close" (accept, FIN without an answer: "empty reply"; what the client sends is
  read and dropped, so the close stays a FIN) or "unlisten" (close the listening
  socket: a real ECONNREFUSED, then listen again on the same port);
* ``throttle(bytes_per_second, direction)`` a slow link (a token bucket per direction,
  shared by all connections);
* ``reset_idle(min_idle, conn)`` reset, now, every open connection that has carried
  nothing for at least min_idle seconds -- what a load balancer or vCenter's idle
  timeout does to a pooled keep-alive socket: the client learns of it only when it
  next sends on that socket.

Every fault is counted (``times``, default 1; None = every time) and fires on the
first connections that reach it; ``clear()`` lifts them all. Byte offsets count
from the start of each connection, so a fault armed while a connection is already
at or past its offset does not touch that connection.

Which connection? TLS hides the bytes, so for HTTPS pick by offset or by index:
``reset_after(5 << 20, "up")`` hits whichever connection uploads more than 5 MiB --
the disk upload, never the small SOAP calls -- and ``conn=2`` picks the third
connection accepted (indices start at 0, refused connections are not counted); any
callable taking a ``ConnInfo`` works too. Plain HTTP shows its requests, and
clients keep connections alive across requests, so there a fault can be anchored
to a request instead: with ``request=b"GET /stable/amd64-usr/1.2.3/x.ova "`` the
offset counts from where the client sent those bytes (up) or from the start of the
answer to them (down), on whichever connection, first or keep-alive, carries them.

With the vCenter simulator (tests/harness/services.py), as a fixture::

    @pytest.fixture
    def vcenter_proxy(vcsim):
        with FaultProxy(upstream=vcsim.host_port) as proxy:
            yield proxy

    def test_upload_cut(cli, vcsim, vcenter_proxy):
        env = dict(vcsim.env(), VMCOREOS_URL=vcenter_proxy.url_for(vcsim.url))
        vcenter_proxy.reset_after(2 << 20, direction="up")  # cut the OVA upload once, 2 MiB in
        run = cli(["deploy", ...], env=env)
        assert vcenter_proxy.stats.resets == 1

The simulator's certificate names 127.0.0.1 (its SAN), not a port, so
``VMCOREOS_CA_FILE=vcsim.cert`` still verifies through the proxy on
127.0.0.1:<other port>. The simulator hands out NFC upload URLs with host ``*``,
which the tool replaces with the host:port it is talking to -- the proxy -- so
uploads go through the proxy too. The strict bed (``Vcsim(strict=True)``, the
fixtures' default) names its separate NFC host (``vcsim.nfc_host``) in the URLs
instead, as a real vCenter names an ESXi host: to cut uploads there, start the
simulator with ``nfc_advertise="127.0.0.1:<port>"`` and a proxy listening on that
port that relays to ``vcsim.nfc_listen`` (tests/e2e/test_faults.py's ``uploads``
fixture does both). A thumbprint (``vcsim.thumbprint``) pins the
same certificate, so it works as well. Over TLS a reset or stall lands mid-record:
clients may report it as ConnectionResetError, ssl.SSLError or a timeout. Pick
byte offsets above what the SOAP connection carries (``stats.conns`` shows each
connection's bytes), since one pyvmomi connection serves every SOAP call.

With the release server (tests/harness/release_server.py)::

    with ReleaseServer(root) as server, FaultProxy.for_url(server.url) as proxy:
        base = proxy.url_for(server.url)             # http://127.0.0.1:<proxy port>
        # The tool asks for version.txt under current/, then for the OVA under its version;
        # the trailing space keeps .ova.sig and .ova.DIGESTS out.
        ova = f"GET /stable/amd64-usr/{version}/flatcar_production_vmware_ova.ova ".encode()
        proxy.reset_after(1_000_000, request=ova)    # 1 MB into that download (headers count)
        proxy.stall(3, after_bytes=1 << 20, request=ova, times=None)
        ...                                          # point the tool at `base`

Publish FCOS streams with ``base_url=proxy.url_for(server.url)`` (or
``relative=True``) so the image download goes through the proxy too. The release
server has its own drop/fail switches; the proxy adds what happens below HTTP.

Watching: ``proxy.stats`` (connections, active, refused, bytes up/down, resets,
stalls, upstream_errors, and per-connection ``ConnInfo``), ``proxy.wait(lambda s:
s.resets == 1)``; each fault method returns its ``Fault``, whose ``fired`` counts.

Everything runs on one thread with a selector -- no busy loop, no thread per
connection. ``stop()`` (or leaving the ``with``) resets every open connection,
releases held ones, closes every socket and joins the thread.

A child process, if a thread will not do: ``python -m tests.harness.faultproxy
--upstream 127.0.0.1:4433`` prints ``{"address": [host, port]}`` and then takes one
JSON call per stdin line (``["reset_after", [1000], {"direction": "up"}]``),
answering each with a JSON line; ``ProxyProcess`` drives it with the same method
names. EOF on stdin or SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import math
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit, urlunsplit

CHUNK = 256 * 1024  # the most one recv() takes
FIRST_BYTES = 1024  # how much of what a client sends first is kept (ConnInfo.first_bytes)
MAX_REQUEST = 1024  # the longest `request=` pattern
RESET_DRAIN = 1.0  # how long a reset waits for the bytes before it to reach the peer
LINGER = 2.0  # how long a connection refused with a FIN is read from before it is closed
DRAIN_POLL = 0.005
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
INF = math.inf
DIRECTIONS = ("up", "down")  # up: client -> upstream, down: upstream -> client


@dataclass(frozen=True)
class ConnInfo:
    """One proxied connection, as fault predicates and ``Stats.conns`` see it."""

    index: int  # 0, 1, ... in accept order
    first_bytes: bytes  # the start of what the client sent (up to FIRST_BYTES, as far as it has arrived)
    bytes_up: int
    bytes_down: int
    open: bool

    def __repr__(self) -> str:  # TLS records make long, unreadable first bytes
        first = repr(self.first_bytes[:40]) + ("..." if len(self.first_bytes) > 40 else "")
        return (f"ConnInfo(index={self.index}, first_bytes={first}, bytes_up={self.bytes_up}, "
                f"bytes_down={self.bytes_down}, open={self.open})")


@dataclass(frozen=True)
class Stats:
    connections: int = 0  # proxied connections so far (refused ones are not counted)
    active: int = 0
    refused: int = 0  # connections turned away by refuse() ("unlisten" refusals never reach us)
    upstream_errors: int = 0  # connections whose upstream connect failed (the client got a reset)
    bytes_up: int = 0
    bytes_down: int = 0
    resets: int = 0  # reset_after() faults carried out
    stalls: int = 0  # stall() faults begun
    idle_resets: int = 0  # connections reset by reset_idle()
    conns: tuple[ConnInfo, ...] = ()


ConnFilter = None | int | Callable[[ConnInfo], bool]


@dataclass(eq=False)
class Fault:
    """An armed fault; the proxy updates ``times`` (left; None = unlimited) and ``fired``."""

    kind: str  # "reset" | "stall"
    direction: str
    offset: int  # from the start of the connection, or of `request`
    seconds: float | None = None  # stall length; None = hold until closed
    times: int | None = 1
    conn: ConnFilter = None
    request: bytes | None = None
    fired: int = 0

    def matches(self, info: ConnInfo) -> bool:
        if self.conn is None:
            return True
        if isinstance(self.conn, int):
            return info.index == self.conn
        return bool(self.conn(info))


@dataclass
class _Refusal:
    until: float
    times: int | None
    mode: str


class _Bucket:
    """Token bucket: `rate` bytes/s, bursts of at most 1/20 s worth (so the rate holds at any scale)."""

    def __init__(self, rate: float, now: float):
        self.rate = float(rate)
        self.capacity = max(1.0, min(float(CHUNK), self.rate / 20))
        self.threshold = max(1.0, self.capacity / 2)  # don't wake up for crumbs
        self.tokens, self.last = self.threshold, now

    def _fill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def wait(self, now: float) -> float:
        self._fill(now)
        return 0.0 if self.tokens >= self.threshold else (self.threshold - self.tokens) / self.rate

    def available(self, now: float) -> int:
        self._fill(now)
        return int(self.tokens)

    def take(self, n: int) -> None:
        self.tokens -= n


class _Pipe:
    """One direction of a connection. Reads only into an empty buffer: backpressure for free."""

    def __init__(self, direction: str, src: socket.socket, dst: socket.socket):
        self.direction, self.src, self.dst = direction, src, dst
        self.buf = memoryview(b"")
        self.read = 0  # bytes taken from src
        self.sent = 0  # bytes given to dst
        self.eof = False
        self.shut = False  # EOF passed on (dst.shutdown(SHUT_WR))
        self.stall_until = 0.0  # monotonic deadline, INF = held, 0 = not stalled
        self.reset_pending = False
        self.checked = -1  # the offset at which the connection-wide faults were last looked at
        self.armed: list[tuple[Fault, int]] = []  # request-anchored faults due at these offsets


class _Conn:
    def __init__(self, index: int, client: socket.socket, upstream: socket.socket):
        self.index, self.client, self.upstream = index, client, upstream
        self.connecting = True
        self.up = _Pipe("up", client, upstream)
        self.down = _Pipe("down", upstream, client)
        self.pipes = (self.up, self.down)
        self.first = bytearray()
        self.tail = b""  # the end of what the client sent, for requests split across reads
        self.reset_deadline: float | None = None
        self.closed = False
        self.last_active = time.monotonic()  # when a byte last arrived from either side

    def info(self) -> ConnInfo:
        return ConnInfo(self.index, bytes(self.first), self.up.sent, self.down.sent, not self.closed)


def _join(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _abortive(sock: socket.socket) -> None:
    """Make close() send RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


def _unacked(sock: socket.socket) -> int:
    """Bytes written to sock that the peer has not acknowledged yet (Linux; elsewhere 0)."""
    try:
        import fcntl
        import termios

        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (ImportError, AttributeError, OSError):
        return 0


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be 'up' or 'down', not {direction!r}")


def _check_times(times: int | None) -> None:
    if times is not None and times < 1:
        raise ValueError("times must be at least 1 (or None for every time)")


class FaultProxy:
    """A TCP relay to `upstream` with switchable faults. Thread-safe; see the module docstring."""

    def __init__(self, upstream: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.upstream = (upstream[0], int(upstream[1]))
        self.address: tuple[str, int] | None = None
        self._listen = (listen[0], int(listen[1]))
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._faults: list[Fault] = []
        self._buckets: dict[str, _Bucket | None] = {"up": None, "down": None}
        self._refusal: _Refusal | None = None
        self._release = False  # clear() asks the loop to let held/stalled connections go
        self._n = dict.fromkeys(("connections", "refused", "upstream_errors", "bytes_up", "bytes_down", "resets",
                                 "stalls", "idle_resets"), 0)
        self._idle_requests: list[list] = []  # [min_idle, conn filter, result or None], done by the loop
        self._history: list[_Conn] = []
        # Owned by the loop thread:
        self._conns: set[_Conn] = set()
        self._masks: dict[socket.socket, int] = {}
        self._closing: dict[socket.socket, float] = {}  # refused with a FIN -> when to give up reading
        self._sel: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._error: BaseException | None = None

    @classmethod
    def for_url(cls, url: str, listen: tuple[str, int] = ("127.0.0.1", 0)) -> FaultProxy:
        parts = urlsplit(url)
        return cls((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)), listen)

    # -- life cycle -----------------------------------------------------------------

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("the proxy is already running")
        family, _, _, _, self._upstream_addr = socket.getaddrinfo(*self.upstream, type=socket.SOCK_STREAM)[0]
        self._family = family
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._sel.register(self._wake_r, READ, "wake")
        try:
            self._open_listener(self._listen)
        except OSError:
            self._close_all()
            raise
        self.address = self._listener.getsockname()[:2]
        self._stopping, self._error = False, None
        self._thread = threading.Thread(target=self._run, name=f"faultproxy-{self.address[1]}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Reset every open connection, close every socket, join the thread. Idempotent."""
        if self._thread is None:
            return
        self._stopping = True
        self._wake()
        self._thread.join(10)
        if self._thread.is_alive():
            raise RuntimeError("the fault proxy's thread did not stop within 10s")
        self._thread = None
        wake_w, self._wake_w = self._wake_w, None
        wake_w.close()
        if self._error is not None:
            raise RuntimeError("the fault proxy's loop failed") from self._error

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url_for(self, url: str) -> str:
        """`url` with the proxy's host:port in place of its own (scheme, path and user kept)."""
        assert self.address is not None, "start() the proxy first"
        parts = urlsplit(url)
        netloc = _join(self.address)
        if "@" in parts.netloc:
            netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
        return urlunsplit(parts._replace(netloc=netloc))

    # -- faults ---------------------------------------------------------------------

    def reset_after(self, n_bytes: int, direction: str = "down", *, times: int | None = 1,
                    conn: ConnFilter = None, request: bytes | None = None) -> Fault:
        """Forward n_bytes in `direction`, then reset both sides (the bytes before reach the peer first)."""
        if n_bytes < 0:
            raise ValueError("n_bytes must be >= 0")
        return self._arm(Fault("reset", direction, int(n_bytes), None, times, conn, request))

    def stall(self, seconds: float | None, after_bytes: int = 0, direction: str = "down", *,
              times: int | None = 1, conn: ConnFilter = None, request: bytes | None = None) -> Fault:
        """Stop forwarding `direction` after after_bytes for `seconds`, then go on (None: hold until closed)."""
        if after_bytes < 0 or (seconds is not None and seconds < 0):
            raise ValueError("after_bytes and seconds must be >= 0")
        return self._arm(Fault("stall", direction, int(after_bytes), seconds, times, conn, request))

    def refuse(self, seconds: float | None = None, *, times: int | None = None, mode: str = "reset") -> None:
        """Turn new connections away for `seconds` and/or the next `times` of them (neither: until clear())."""
        if mode not in ("reset", "close", "unlisten"):
            raise ValueError("mode must be 'reset', 'close' or 'unlisten'")
        _check_times(times)
        if mode == "unlisten" and times is not None:
            raise ValueError("'unlisten' refusals cannot be counted; give seconds")
        until = INF if seconds is None else time.monotonic() + seconds
        with self._lock:
            self._refusal = _Refusal(until, times, mode)
        self._wake()

    def throttle(self, bytes_per_second: float | None, direction: str = "both") -> None:
        """Limit the rate in one direction or both (shared by all connections); None lifts it."""
        if direction != "both":
            _check_direction(direction)
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be > 0 (None lifts the limit)")
        now = time.monotonic()
        with self._lock:
            for d in DIRECTIONS if direction == "both" else (direction,):
                self._buckets[d] = None if bytes_per_second is None else _Bucket(bytes_per_second, now)
        self._wake()

    def reset_idle(self, min_idle: float = 0.0, *, conn: ConnFilter = None, timeout: float = 10.0) -> int:
        """Reset every open connection idle for at least min_idle seconds (nothing read from
        either side, nothing buffered); return how many. Busy connections are left alone."""
        if min_idle < 0:
            raise ValueError("min_idle must be >= 0")
        if conn is not None and not isinstance(conn, int) and not callable(conn):
            raise TypeError("conn must be a connection index or a callable taking a ConnInfo")
        request = [float(min_idle), conn, None]
        with self._cond:
            self._idle_requests.append(request)
        self._wake()
        deadline = time.monotonic() + timeout
        with self._cond:
            while request[2] is None:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    raise TimeoutError("the proxy loop did not answer reset_idle")
                self._cond.wait(left)
        return request[2]

    def _reset_idle_now(self, now: float) -> None:
        with self._lock:
            requests, self._idle_requests = self._idle_requests, []
        for request in requests:
            min_idle, conn_filter, _ = request
            probe = Fault("reset", "up", 0, conn=conn_filter)
            victims = [c for c in self._conns
                       if not c.connecting and not any(p.buf for p in c.pipes)
                       and now - c.last_active >= min_idle and probe.matches(c.info())]
            for c in victims:
                self._close(c, reset=True)
            with self._cond:
                self._n["idle_resets"] += len(victims)
                request[2] = len(victims)
                self._cond.notify_all()

    def clear(self) -> None:
        """Lift every fault: armed ones, refusals, throttles, and stalls under way."""
        with self._lock:
            self._faults.clear()
            self._refusal = None
            self._buckets = {"up": None, "down": None}
            self._release = True
        self._wake()

    def _arm(self, fault: Fault) -> Fault:
        _check_direction(fault.direction)
        _check_times(fault.times)
        if fault.conn is not None and not isinstance(fault.conn, int) and not callable(fault.conn):
            raise TypeError("conn must be a connection index or a callable taking a ConnInfo")
        request = fault.request
        if request is not None and not (isinstance(request, bytes) and 0 < len(request) <= MAX_REQUEST):
            raise ValueError(f"request must be 1 to {MAX_REQUEST} bytes")
        with self._lock:
            self._faults.append(fault)
        self._wake()
        return fault

    # -- watching -------------------------------------------------------------------

    @property
    def stats(self) -> Stats:
        with self._lock:
            return Stats(active=sum(1 for c in self._history if not c.closed),
                         conns=tuple(c.info() for c in self._history), **self._n)

    def wait(self, predicate: Callable[[Stats], bool], timeout: float = 10.0) -> Stats:
        """Block until predicate(stats) holds; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                s = self.stats
                if predicate(s):
                    return s
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"condition not met within {timeout}s; {s}")
                self._cond.wait(left)

    def _count(self, **deltas: int) -> None:
        with self._cond:
            for k, v in deltas.items():
                self._n[k] += v
            self._cond.notify_all()

    # -- the loop (one thread owns every socket below) --------------------------------

    def _wake(self) -> None:
        w = self._wake_w
        if w is not None:
            try:
                w.send(b"\0")
            except OSError:  # full (a wake-up is pending anyway) or closed by stop()
                pass

    def _run(self) -> None:
        try:
            while not self._stopping:
                timeout = self._tick(time.monotonic())
                for key, mask in self._sel.select(timeout):
                    if key.data == "wake":
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except BlockingIOError:
                            pass
                    elif key.data == "listen":
                        self._accept()
                    elif key.data == "closing":
                        self._discard(key.fileobj)
                    else:
                        self._on_event(*key.data, mask)
        except BaseException as exc:  # reported by stop()
            self._error = exc
        finally:
            self._close_all()

    def _close_all(self) -> None:
        for conn in list(self._conns):
            self._close(conn, reset=True)
        for sock in list(self._closing):
            self._drop(sock, reset=True)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._wake_r is not None:
            self._wake_r.close()
            self._wake_r = None
        if self._sel is not None:
            self._sel.close()
            self._sel = None
        self._masks.clear()
        with self._cond:
            self._cond.notify_all()

    def _tick(self, now: float) -> float | None:
        """Apply timers and switches, set what each socket waits for; return the select timeout."""
        deadline = INF
        with self._lock:
            release, self._release = self._release, False
            r = self._refusal
            if r is not None and now >= r.until:
                self._refusal = r = None
            if r is not None:
                deadline = r.until
            listening = r is None or r.mode != "unlisten"
        if listening and self._listener is None:
            self._open_listener(self.address)
        elif not listening and self._listener is not None:
            self._want(self._listener, 0, None)
            self._listener.close()
            self._listener = None
        for sock, until in list(self._closing.items()):
            if now >= until:
                self._drop(sock, reset=True)
            else:
                deadline = min(deadline, until)
        self._reset_idle_now(now)
        for conn in list(self._conns):
            if release:
                for p in conn.pipes:
                    p.stall_until = 0.0
            deadline = min(deadline, self._update(conn, now))
        return None if deadline == INF else max(0.0, deadline - now)

    def _open_listener(self, address: tuple[str, int]) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(address)
            s.listen(128)
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        self._listener = s
        self._want(s, READ, "listen")

    def _want(self, sock: socket.socket, events: int, data) -> None:
        current = self._masks.get(sock, 0)
        if events == current:
            return
        if not events:
            self._sel.unregister(sock)
            del self._masks[sock]
            return
        if current:
            self._sel.modify(sock, events, data)
        else:
            self._sel.register(sock, events, data)
        self._masks[sock] = events

    def _update(self, conn: _Conn, now: float) -> float:
        if conn.connecting:
            self._want(conn.upstream, WRITE, (conn, False))
            return INF
        deadline = INF
        events = {conn.client: 0, conn.upstream: 0}
        for p in conn.pipes:
            if p.stall_until:
                if p.stall_until > now:
                    deadline = min(deadline, p.stall_until)
                    continue
                p.stall_until = 0.0
            if p.reset_pending:
                if conn.reset_deadline is None:
                    conn.reset_deadline = now + RESET_DRAIN
                if _unacked(p.dst) == 0 or now >= conn.reset_deadline:
                    self._count(resets=1)
                    self._close(conn, reset=True)
                    return INF
                deadline = min(deadline, now + DRAIN_POLL, conn.reset_deadline)
                continue
            if p.buf:
                events[p.dst] |= WRITE
            elif not p.eof:
                with self._lock:
                    bucket = self._buckets[p.direction]
                    wait = bucket.wait(now) if bucket else 0.0
                if wait:
                    deadline = min(deadline, now + wait)
                else:
                    events[p.src] |= READ
        self._want(conn.client, events[conn.client], (conn, True))
        self._want(conn.upstream, events[conn.upstream], (conn, False))
        return deadline

    def _accept(self) -> None:
        while self._listener is not None:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ECONNABORTED, EMFILE: nothing to relay
                return
            with self._lock:
                mode = self._take_refusal(time.monotonic())
            if mode is not None:
                self._count(refused=1)
                if mode == "reset":
                    _abortive(sock)
                    sock.close()
                else:
                    self._refuse_with_fin(sock)
                continue
            self._open_conn(sock)

    def _refuse_with_fin(self, sock: socket.socket) -> None:
        # close() with unread bytes would send RST; say FIN now, close once the client has.
        try:
            sock.setblocking(False)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        self._closing[sock] = time.monotonic() + LINGER
        self._want(sock, READ, "closing")

    def _discard(self, sock: socket.socket) -> None:
        try:
            while sock.recv(65536):
                pass
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._drop(sock, reset=False)  # EOF or an error: the client is done

    def _drop(self, sock: socket.socket, reset: bool) -> None:
        self._want(sock, 0, None)
        del self._closing[sock]
        if reset:
            _abortive(sock)
        sock.close()

    def _take_refusal(self, now: float) -> str | None:
        r = self._refusal
        if r is None or r.mode == "unlisten":
            return None
        if now >= r.until:
            self._refusal = None
            return None
        if r.times is not None:
            r.times -= 1
            if r.times == 0:
                self._refusal = None
        return r.mode

    def _open_conn(self, client: socket.socket) -> None:
        upstream = socket.socket(self._family, socket.SOCK_STREAM)
        for s in (client, upstream):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = upstream.connect_ex(self._upstream_addr)
        with self._cond:
            conn = _Conn(self._n["connections"], client, upstream)
            self._n["connections"] += 1
            self._history.append(conn)
            self._cond.notify_all()
        self._conns.add(conn)
        if err == 0:
            conn.connecting = False
        elif err != errno.EINPROGRESS:
            self._count(upstream_errors=1)
            self._close(conn, reset=True)

    def _close(self, conn: _Conn, reset: bool) -> None:
        for s in (conn.client, conn.upstream):
            if s in self._masks:
                self._want(s, 0, None)
            if reset:
                _abortive(s)
            s.close()
        self._conns.discard(conn)
        with self._cond:
            conn.closed = True
            self._cond.notify_all()

    def _on_event(self, conn: _Conn, client_side: bool, mask: int) -> None:
        if conn.closed:
            return
        try:
            if conn.connecting:
                err = conn.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._count(upstream_errors=1)
                    self._close(conn, reset=True)
                else:
                    conn.connecting = False
                return
            if mask & READ:
                self._read(conn, conn.up if client_side else conn.down)
            if mask & WRITE and not conn.closed:
                self._write(conn, conn.down if client_side else conn.up)
        except OSError:
            # A reset or broken pipe on one side is passed on to the other as a reset.
            self._close(conn, reset=True)

    def _read(self, conn: _Conn, p: _Pipe) -> None:
        if p.buf or p.eof or p.stall_until or p.reset_pending:
            return
        limit = CHUNK
        with self._lock:
            bucket = self._buckets[p.direction]
            if bucket:
                limit = bucket.available(time.monotonic())
        if limit <= 0:
            return
        try:
            data = p.src.recv(limit)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            p.eof = True
            if any(q.stall_until == INF for q in conn.pipes):
                self._close(conn, reset=True)  # a held connection is held until either side closes
                return
            p.dst.shutdown(socket.SHUT_WR)
            p.shut = True
            if conn.up.shut and conn.down.shut:
                self._close(conn, reset=False)
            return
        with self._lock:
            if bucket:
                bucket.take(len(data))
            if p is conn.up:
                if len(conn.first) < FIRST_BYTES:
                    conn.first += data[: FIRST_BYTES - len(conn.first)]
                self._spot_requests(conn, data)
        p.read += len(data)
        conn.last_active = time.monotonic()
        p.buf = memoryview(data)
        self._write(conn, p)

    def _spot_requests(self, conn: _Conn, data: bytes) -> None:
        """Anchor the `request=` faults whose bytes the client just sent (called before up.read moves)."""
        window = conn.tail + data
        start = conn.up.read - len(conn.tail)  # the stream offset of window[0]
        for f in self._faults:
            if f.request is None or f.times == 0:
                continue
            i = window.find(f.request)
            while i != -1:
                if i + len(f.request) > len(conn.tail):  # not seen in an earlier read
                    if f.direction == "up":
                        conn.up.armed.append((f, start + i + f.offset))
                    else:  # the answer starts after whatever upstream has sent so far
                        conn.down.armed.append((f, conn.down.read + f.offset))
                i = window.find(f.request, i + 1)
        conn.tail = window[-(MAX_REQUEST - 1):]

    def _write(self, conn: _Conn, p: _Pipe) -> None:
        """Send what the pipe holds, stopping at every fault offset in it to apply the fault."""
        while p.buf and not (p.stall_until or p.reset_pending):
            self._fire(conn, p)
            if p.stall_until or p.reset_pending:
                return
            with self._lock:
                boundary = min(
                    [f.offset for f in self._faults
                     if f.request is None and f.direction == p.direction and f.times != 0 and f.offset > p.sent]
                    + [at for _, at in p.armed if at > p.sent],
                    default=INF,
                )
            chunk = p.buf if boundary - p.sent >= len(p.buf) else p.buf[: boundary - p.sent]
            try:
                n = p.dst.send(chunk)
            except (BlockingIOError, InterruptedError):
                return
            p.buf = p.buf[n:]
            with self._cond:
                p.sent += n
                self._n["bytes_" + p.direction] += n
                self._cond.notify_all()
            if n < len(chunk):
                return  # the socket is full: wait until it is writable

    def _fire(self, conn: _Conn, p: _Pipe) -> None:
        """Apply the faults due where the pipe stands, before the byte at p.sent goes out."""
        now = time.monotonic()
        with self._cond:
            due = [f for f, at in p.armed if at <= p.sent]
            p.armed = [(f, at) for f, at in p.armed if at > p.sent and f.times != 0]
            if p.checked != p.sent:  # each offset once: a stall that ends must not start again
                p.checked = p.sent
                due += [f for f in self._faults
                        if f.request is None and f.direction == p.direction and f.offset == p.sent]
            info = None
            for f in due:
                if f.times == 0:
                    continue
                if f.conn is not None:
                    info = info or conn.info()
                    if not f.matches(info):
                        continue
                f.fired += 1
                if f.times is not None:
                    f.times -= 1
                if f.kind == "stall":
                    p.stall_until = INF if f.seconds is None else now + f.seconds
                    self._n["stalls"] += 1
                else:
                    p.reset_pending = True  # carried out after any stall due at the same offset
            self._faults = [f for f in self._faults if f.times != 0]
            self._cond.notify_all()


# -- as a child process ------------------------------------------------------------------

COMMANDS = ("reset_after", "stall", "refuse", "throttle", "reset_idle", "clear", "stats", "url_for")
ROOT = Path(__file__).resolve().parents[2]


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if callable(value):
        return repr(value)
    return value


def _serve_call(proxy: FaultProxy, line: str) -> dict:
    try:
        name, args, kwargs = (json.loads(line) + [[], {}])[:3]  # ["name", args?, kwargs?]
        if name not in COMMANDS:
            raise ValueError(f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
        if isinstance(kwargs.get("request"), str):
            kwargs["request"] = kwargs["request"].encode("latin-1")
        result = proxy.stats if name == "stats" else getattr(proxy, name)(*args, **kwargs)
        return {"ok": True, "result": _jsonable(result)}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _host_port(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.harness.faultproxy", description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="host:port to relay to")
    ap.add_argument("--listen", default="127.0.0.1:0", help="host:port to listen on (default 127.0.0.1:0)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    proxy = FaultProxy(_host_port(args.upstream), _host_port(args.listen)).start()
    try:
        print(json.dumps({"address": list(proxy.address)}), flush=True)
        for line in sys.stdin:
            if line.strip():
                print(json.dumps(_serve_call(proxy, line)), flush=True)
    finally:
        proxy.stop()
    return 0


class ProxyProcess:
    """FaultProxy in a child process; call the same methods (JSON-able arguments; stats come back as a dict)."""

    def __init__(self, upstream: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0)):
        self.upstream, self.listen = upstream, listen
        self.proc: subprocess.Popen | None = None
        self.address: tuple[str, int] | None = None

    def start(self) -> Self:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.faultproxy",
             "--upstream", _join(self.upstream), "--listen", _join(self.listen)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        )
        self.address = tuple(self._reply()["address"])
        return self

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the proxy process exited ({self.proc.poll()})")
        return json.loads(line)

    def call(self, name: str, *args, **kwargs):
        self.proc.stdin.write(json.dumps([name, args, kwargs]) + "\n")
        self.proc.stdin.flush()
        reply = self._reply()
        if not reply["ok"]:
            raise RuntimeError(reply["error"])
        return reply["result"]

    def __getattr__(self, name: str):
        if name in COMMANDS:
            return partial(self.call, name)
        raise AttributeError(name)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()  # EOF: the child stops its proxy and exits
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            self.proc.stdout.close()
            self.proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
