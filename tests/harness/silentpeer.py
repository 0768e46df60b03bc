"""A peer that accepts connections and then never answers, or answers one byte at a time.

``SilentPeer(trickle=None)`` accepts on 127.0.0.1:<free port> and holds every
connection open without a byte; with ``trickle=s`` it sends one byte (a space)
every s seconds instead (after ``prefix``: e.g. a TLS record header announcing 16 KiB, which a TLS
client then waits to fill), just inside a socket timeout longer than s.
With ``tls`` (see server_context()) it completes the TLS handshake and reads the request first.
``stop()`` closes every connection and joins every thread.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from pathlib import Path


class SilentPeer:
    def __init__(self, trickle: float | None = None, prefix: bytes = b"", tls: ssl.SSLContext | None = None):
        self.trickle = trickle
        self.prefix = prefix
        self.tls = tls
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.accepted = 0

    def __enter__(self) -> "SilentPeer":
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/sdk"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            self.accepted += 1
            self._conns.append(conn)
            if self.trickle is not None:
                t = threading.Thread(target=self._drip, args=(conn,), daemon=True)
                t.start()
                self._threads.append(t)

    def _drip(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:  # a real TLS server that then answers a request one byte at a time
                conn.settimeout(10)
                conn = self.tls.wrap_socket(conn, server_side=True)
                self._conns.append(conn)
                conn.recv(65536)
            conn.sendall(self.prefix)
        except OSError:
            return
        while not self._stop.wait(self.trickle):
            try:
                conn.sendall(b" ")
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()
        for c in self._conns:
            c.close()
        self._sock.close()


def server_context(directory: Path) -> ssl.SSLContext:
    """A TLS server context with a throwaway self-signed certificate made in directory."""
    cert, key = Path(directory, "peer-cert.pem"), Path(directory, "peer-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx
