"""The fault proxy against tiny local servers: pass-through, resets, stalls, refusals, throttling, clean stop."""

from __future__ import annotations

import hashlib
import http.client
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from tests.harness.faultproxy import FaultProxy, ProxyProcess

MIB = 1 << 20
PATTERN = bytes(range(256)) * 4096  # 1 MiB


def body(n: int) -> bytes:
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


# -- tiny servers ----------------------------------------------------------------------


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(5)
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass


class _Http(BaseHTTPRequestHandler):
    """GET /bytes/N: N pattern bytes. PUT: the body's sha256."""

    protocol_version = "HTTP/1.1"
    timeout = 5

    def log_message(self, *args):
        pass

    def do_GET(self):
        data = body(int(self.path.rsplit("/", 1)[1]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        left, digest = int(self.headers["Content-Length"]), hashlib.sha256()
        while left:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                return
            digest.update(chunk)
            left -= len(chunk)
        answer = digest.hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


class _Quiet:
    daemon_threads = False
    block_on_close = True  # server_close() joins the handler threads

    def handle_error(self, request, client_address):  # resets are the point here
        pass


class _EchoServer(_Quiet, socketserver.ThreadingTCPServer):
    pass


class _HttpServer(_Quiet, ThreadingHTTPServer):
    pass


def _serve(server):
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[:2]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def echo():
    yield from _serve(_EchoServer(("127.0.0.1", 0), _Echo))


@pytest.fixture
def web():
    yield from _serve(_HttpServer(("127.0.0.1", 0), _Http))


def _tcp_sockets() -> set:
    return {(c.laddr, c.raddr, c.status) for c in psutil.Process().net_connections(kind="tcp")}


@pytest.fixture(autouse=True)
def no_leaks():
    """Every test leaves no thread and no socket of its own behind."""
    threads, sockets = set(threading.enumerate()), _tcp_sockets()
    yield
    deadline = time.monotonic() + 5
    for t in set(threading.enumerate()) - threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert [t.name for t in threading.enumerate() if t not in threads] == []
    assert _tcp_sockets() - sockets == set()


@pytest.fixture
def proxies():
    """proxies(upstream) -> a started FaultProxy; all stopped after the test."""
    started = []

    def make(upstream):
        started.append(FaultProxy(upstream).start())
        return started[-1]

    yield make
    for p in started:
        p.stop()


# -- clients ---------------------------------------------------------------------------


def get(address, n: int, timeout: float = 5.0) -> tuple[bytes, OSError | None]:
    """Raw GET /bytes/n; everything received (head and body) and the error that ended it, if any."""
    got = bytearray()
    try:
        # A refused connection can fail in connect() already, when the RST beats the handshake's end.
        with socket.create_connection(address, timeout=timeout) as s:
            s.sendall(f"GET /bytes/{n} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            while chunk := s.recv(65536):
                got += chunk
    except OSError as exc:
        return bytes(got), exc
    return bytes(got), None


def get_body(address, n: int) -> bytes:
    got, err = get(address, n)
    assert err is None
    head, _, data = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    return data


def put(address, data: bytes) -> str:
    conn = http.client.HTTPConnection(*address, timeout=5)
    try:
        conn.request("PUT", "/upload", body=data)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


# -- tests -----------------------------------------------------------------------------


def test_passes_10_mib_through_both_ways_intact(echo, proxies):
    proxy = proxies(echo)
    data = body(10 * MIB)
    received = bytearray()
    with socket.create_connection(proxy.address, timeout=5) as s:
        def send():
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        while chunk := s.recv(1 << 16):
            received += chunk
        sender.join(5)
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    stats = proxy.wait(lambda s: s.active == 0)
    assert (stats.connections, stats.bytes_up, stats.bytes_down, stats.resets) == (1, 10 * MIB, 10 * MIB, 0)


def test_http_through_the_proxy_and_url_for(web, proxies):
    proxy = proxies(web)
    assert get_body(proxy.address, 3 * MIB) == body(3 * MIB)
    assert put(proxy.address, body(2 * MIB)) == hashlib.sha256(body(2 * MIB)).hexdigest()
    host, port = proxy.address
    assert proxy.url_for("https://user@127.0.0.1:4433/sdk?x=1") == f"https://user@{host}:{port}/sdk?x=1"
    assert FaultProxy.for_url("https://127.0.0.1/sdk").upstream == ("127.0.0.1", 443)


def test_reset_after_n_bytes_down_gives_exactly_n_then_a_reset(web, proxies):
    proxy = proxies(web)
    fault = proxy.reset_after(100_000, direction="down")
    got, err = get(proxy.address, MIB)
    assert isinstance(err, ConnectionResetError)
    assert len(got) == 100_000  # the bytes before the reset reach the client first
    data = got.partition(b"\r\n\r\n")[2]
    assert data == body(MIB)[: len(data)]
    assert fault.fired == 1 and fault.times == 0
    assert proxy.wait(lambda s: s.resets == 1 and s.active == 0).bytes_down == 100_000
    # One-shot: the next download is whole.
    assert get_body(proxy.address, MIB) == body(MIB)


def test_reset_after_bytes_up_hits_only_the_connection_that_uploads_that_much(web, proxies):
    proxy = proxies(web)
    proxy.reset_after(256 * 1024, direction="up")
    assert get_body(proxy.address, 1000) == body(1000)  # small requests cross nothing
    with pytest.raises(ConnectionError):
        put(proxy.address, body(MIB))
    stats = proxy.wait(lambda s: s.resets == 1 and s.active == 0)
    assert stats.conns[1].bytes_up == 256 * 1024
    assert put(proxy.address, body(MIB)) == hashlib.sha256(body(MIB)).hexdigest()


def test_counted_faults_apply_that_many_times_then_stop(web, proxies):
    proxy = proxies(web)
    fault = proxy.reset_after(10, times=2)
    for _ in range(2):
        got, err = get(proxy.address, 5000)
        assert isinstance(err, ConnectionResetError) and len(got) == 10
    assert get_body(proxy.address, 5000) == body(5000)
    assert (fault.fired, fault.times, proxy.stats.resets) == (2, 0, 2)

    proxy.reset_after(0, times=None)  # every time, until clear()
    assert isinstance(get(proxy.address, 10)[1], ConnectionResetError)
    assert isinstance(get(proxy.address, 10)[1], ConnectionResetError)
    proxy.clear()
    assert get_body(proxy.address, 10) == body(10)


def test_faults_can_pick_a_connection_by_index_or_predicate(web, proxies):
    proxy = proxies(web)
    by_index = proxy.reset_after(50, conn=1)
    by_predicate = proxy.reset_after(50, conn=lambda c: c.first_bytes.startswith(b"GET /bytes/4444 "))
    assert get_body(proxy.address, 1111) == body(1111)  # connection 0
    assert get(proxy.address, 2222)[1] is not None  # 1: its index matches
    assert get_body(proxy.address, 3333) == body(3333)  # 2
    assert get(proxy.address, 4444)[1] is not None  # 3: the predicate matches
    assert get_body(proxy.address, 4444) == body(4444)  # both were one-shot
    assert (by_index.fired, by_predicate.fired) == (1, 1)
    assert [c.first_bytes.split(b"\r\n")[0] for c in proxy.stats.conns][:2] == [
        b"GET /bytes/1111 HTTP/1.1", b"GET /bytes/2222 HTTP/1.1"]


def test_a_fault_anchored_to_a_request_finds_it_on_a_kept_alive_connection(web, proxies):
    proxy = proxies(web)
    download = proxy.reset_after(5000, request=b"GET /bytes/100000 ")
    upload = proxy.stall(0.3, after_bytes=1000, direction="up", request=b"PUT /", times=None)
    conn = http.client.HTTPConnection(*proxy.address, timeout=5)
    try:
        conn.request("GET", "/bytes/100")  # the first request: not the one
        assert conn.getresponse().read() == body(100)
        t0 = time.monotonic()
        conn.request("PUT", "/upload", body=body(50_000))
        assert conn.getresponse().read().decode() == hashlib.sha256(body(50_000)).hexdigest()
        assert time.monotonic() - t0 >= 0.28
        # The third request on the same socket, raw, to count what arrives of its answer.
        conn.sock.sendall(b"GET /bytes/100000 HTTP/1.1\r\nHost: t\r\n\r\n")
        got = 0
        with pytest.raises(ConnectionResetError):
            while chunk := conn.sock.recv(65536):
                got += len(chunk)
        assert got == 5000  # counted from the start of that answer, not of the connection
    finally:
        conn.close()
    stats = proxy.wait(lambda s: s.resets == 1 and s.active == 0)
    assert stats.connections == 1 and (download.fired, upload.fired) == (1, 1)


def test_stall_delays_delivery_by_at_least_t_then_goes_on(web, proxies):
    proxy = proxies(web)
    fault = proxy.stall(0.5, after_bytes=1000, direction="down")
    with socket.create_connection(proxy.address, timeout=5) as s:
        s.sendall(b"GET /bytes/200000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        got = bytearray()
        while len(got) < 1000:
            got += s.recv(1000 - len(got))
        t0 = time.monotonic()
        more = s.recv(65536)
        delay = time.monotonic() - t0
        got += more
        while chunk := s.recv(65536):
            got += chunk
    assert delay >= 0.45  # monotonic clock granularity aside
    assert got.partition(b"\r\n\r\n")[2] == body(200_000)
    assert fault.fired == 1 and proxy.stats.stalls == 1


def test_a_client_timeout_shorter_than_the_stall_fires(web, proxies):
    proxy = proxies(web)
    proxy.stall(1.0, direction="down")
    t0 = time.monotonic()
    got, err = get(proxy.address, 1000, timeout=0.3)
    assert isinstance(err, TimeoutError) and got == b""
    assert 0.25 <= time.monotonic() - t0 < 1.0
    proxy.wait(lambda s: s.active == 0, timeout=3)  # released once the stall ends


def test_a_held_stall_lasts_until_the_client_gives_up_or_clear(web, proxies):
    proxy = proxies(web)
    proxy.stall(None, direction="down", times=2)
    got, err = get(proxy.address, 1000, timeout=0.3)
    assert isinstance(err, TimeoutError)
    proxy.wait(lambda s: s.active == 0, timeout=2)  # the client closed: the held connection goes

    with socket.create_connection(proxy.address, timeout=5) as s:
        s.sendall(b"GET /bytes/1000 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        proxy.wait(lambda st: st.stalls == 2)
        s.settimeout(0.2)
        with pytest.raises(TimeoutError):
            s.recv(1)
        proxy.clear()  # lifts stalls under way too
        s.settimeout(5)
        got = bytearray()
        while chunk := s.recv(65536):
            got += chunk
    assert got.partition(b"\r\n\r\n")[2] == body(1000)


def test_stall_upstream_direction(echo, proxies):
    proxy = proxies(echo)
    proxy.stall(0.3, after_bytes=5, direction="up")
    with socket.create_connection(proxy.address, timeout=5) as s:
        t0 = time.monotonic()
        s.sendall(b"0123456789")
        got = bytearray()
        while len(got) < 10:
            got += s.recv(10)
        assert time.monotonic() - t0 >= 0.28
    assert got == b"0123456789"


def test_refuse_with_resets_for_a_while_then_accept(web, proxies):
    proxy = proxies(web)
    proxy.refuse(0.4)
    t0 = time.monotonic()
    got, err = get(proxy.address, 100)
    assert isinstance(err, ConnectionError) and got == b""
    while (result := get(proxy.address, 100))[1] is not None:
        assert time.monotonic() - t0 < 3
        time.sleep(0.05)
    assert time.monotonic() - t0 >= 0.38
    assert result[0].endswith(body(100))
    stats = proxy.stats
    assert stats.refused >= 1 and stats.connections == 1


def test_refuse_a_number_of_connections_with_fin(web, proxies):
    proxy = proxies(web)
    proxy.refuse(times=2, mode="close")
    assert get(proxy.address, 100) == (b"", None)  # an empty reply
    assert get(proxy.address, 100) == (b"", None)
    assert get_body(proxy.address, 100) == body(100)
    assert (proxy.stats.refused, proxy.stats.connections) == (2, 1)


def test_refuse_by_not_listening_then_listen_again_on_the_same_port(web, proxies):
    proxy = proxies(web)
    t0 = time.monotonic()
    proxy.refuse(0.3, mode="unlisten")
    # The loop closes its listener at once and opens it again 0.3 s later.
    while not isinstance(get(proxy.address, 100)[1], ConnectionRefusedError):
        assert time.monotonic() - t0 < 2
        time.sleep(0.01)
    while isinstance((result := get(proxy.address, 100))[1], ConnectionRefusedError):
        assert time.monotonic() - t0 < 2
        time.sleep(0.05)
    assert time.monotonic() - t0 >= 0.28
    assert result[1] is None and result[0].endswith(body(100))


def test_throttle_limits_the_rate_and_lifts(web, proxies):
    proxy = proxies(web)
    rate, n = 400_000, 200_000
    proxy.throttle(rate, direction="down")
    t0 = time.monotonic()
    assert get_body(proxy.address, n) == body(n)
    measured = n / (time.monotonic() - t0)
    assert rate / 1.5 <= measured <= rate * 1.5
    # Upstream direction: an upload at the same rate.
    proxy.throttle(None, direction="down")
    proxy.throttle(rate, direction="up")
    t0 = time.monotonic()
    assert put(proxy.address, body(n)) == hashlib.sha256(body(n)).hexdigest()
    measured = n / (time.monotonic() - t0)
    assert rate / 1.5 <= measured <= rate * 1.5
    proxy.throttle(None)
    t0 = time.monotonic()
    assert get_body(proxy.address, 4 * MIB) == body(4 * MIB)
    assert time.monotonic() - t0 < 1.0


def test_an_unreachable_upstream_resets_the_client(proxies):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()
    proxy = proxies(dead)
    got, err = get(proxy.address, 10)
    assert isinstance(err, ConnectionError) and got == b""
    assert proxy.wait(lambda s: s.upstream_errors == 1 and s.active == 0).connections == 1


def test_stop_closes_every_socket_and_joins_its_thread(web):
    proxy = FaultProxy(web).start()
    port = proxy.address[1]
    proxy.stall(None, direction="down")  # held until stop()
    held = socket.create_connection(proxy.address, timeout=5)
    held.sendall(b"GET /bytes/100 HTTP/1.1\r\nHost: t\r\n\r\n")
    idle = socket.create_connection(proxy.address, timeout=5)
    try:
        proxy.wait(lambda s: s.stalls == 1 and s.active == 2)
        assert [t.name for t in threading.enumerate() if t.name.startswith("faultproxy")] == [f"faultproxy-{port}"]
    finally:
        proxy.stop()
    assert [t for t in threading.enumerate() if t.name.startswith("faultproxy")] == []
    for s in (held, idle):  # their proxied connections were reset
        with pytest.raises(ConnectionResetError):
            s.recv(1)
        s.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    assert not [c for c in psutil.Process().net_connections(kind="tcp") if port in (c.laddr[1], *c.raddr[1:])]
    proxy.stop()  # idempotent


def test_in_a_child_process(echo):
    with ProxyProcess(echo) as child:
        assert child.reset_after(5, direction="down")["kind"] == "reset"
        with socket.create_connection(child.address, timeout=5) as s:
            s.sendall(b"0123456789")
            got = bytearray()
            with pytest.raises(ConnectionResetError):
                while chunk := s.recv(10):
                    got += chunk
        assert got == b"01234"
        stats = child.stats()
        assert (stats["connections"], stats["resets"]) == (1, 1)
        with pytest.raises(RuntimeError, match="direction"):
            child.stall(1, direction="sideways")
        assert child.proc.poll() is None
    assert child.proc is None


def test_reset_idle_cuts_a_pooled_keepalive_connection_but_not_a_busy_one(web, proxies):
    proxy = proxies(web)
    pooled = http.client.HTTPConnection(*proxy.address, timeout=5)
    try:
        pooled.request("GET", "/bytes/100")  # HTTP/1.1 keep-alive: the socket stays open, idle
        assert pooled.getresponse().read() == body(100)
        proxy.wait(lambda s: s.bytes_down > 0)
        assert proxy.reset_idle(min_idle=5) == 0  # not idle that long yet
        time.sleep(1.0)
        busy = socket.create_connection(proxy.address, timeout=5)  # just opened: not idle 0.8 s
        try:
            proxy.wait(lambda s: s.connections == 2)
            assert proxy.reset_idle(min_idle=0.8) == 1
            stats = proxy.wait(lambda s: s.active == 1)
            assert stats.idle_resets == 1 and not stats.conns[0].open and stats.conns[1].open
        finally:
            busy.close()
        # The client learns only when it reuses the socket, as with a load balancer's cut.
        with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
            pooled.request("GET", "/bytes/100")
            pooled.getresponse().read()
    finally:
        pooled.close()
