"""A local release server for tests: Flatcar/CoreOS channel trees and Fedora CoreOS streams.

``ReleaseTree`` builds, under a root directory, what the vendors serve
(coreos-facts.md section 1)::

    <root>/<channel>/amd64-usr/<version>/
        version.txt (+ .sig)
        flatcar_production_vmware_ova.ova, .ova.sig
        flatcar_production_vmware_ova.ova.DIGESTS, .DIGESTS.asc, .DIGESTS.sig   (per-file, since 2022)
        or flatcar_production_vmware_ova.DIGESTS, .DIGESTS.asc                  (combined, older releases)
    <root>/<channel>/amd64-usr/current/  a copy of the newest published version
    <root>/streams/<stream>.json          FCOS stream metadata
    <root>/prod/streams/<stream>/builds/<version>/x86_64/fedora-coreos-<version>-vmware.x86_64.ova (+ .sig)

everything signed at test time by a ``TestSigner``. ``publish()`` can be
called again with a newer version; it moves ``current`` (rebuild tests).

``ReleaseServer`` serves a root on 127.0.0.1:<free port> with HTTP/1.1,
Range requests (206 + Content-Range, If-Range), a log of every request, and
fault switches: drop the connection after N body bytes (once, K times or
always), answer an error status the first K times, ignore Range (always
200), send no Content-Length, redirect. ``stop()`` joins
every thread and closes the socket.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.harness.ova_builder import build_ova
from tests.harness.signing import TestSigner, write_digests

FILE_PREFIX = {"flatcar": "flatcar_production_vmware_ova", "coreos": "coreos_production_vmware_ova"}
VERSION_KEYS = {"flatcar": "FLATCAR", "coreos": "COREOS"}


def version_txt(version: str, prefix: str = "FLATCAR") -> str:
    major, minor, patch = (version.split(".") + ["0", "0"])[:3]
    return (
        f"{prefix}_BUILD={major}\n{prefix}_BRANCH={minor}\n{prefix}_PATCH={patch}\n"
        f"{prefix}_VERSION={version}\n{prefix}_VERSION_ID={version}\n{prefix}_BUILD_ID=\"\"\n"
        f"{prefix}_SDK_VERSION={major}.0.0\n"
    )


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


class ReleaseTree:
    """Builds and signs release directories under root. Files can be altered afterwards to inject faults."""

    def __init__(self, root: Path, signer: TestSigner):
        self.root = Path(root)
        self.signer = signer
        self.root.mkdir(parents=True, exist_ok=True)

    def channel_dir(self, channel: str = "stable") -> Path:
        return self.root / channel / "amd64-usr"

    def path(self, name: str, *, channel: str = "stable", version: str = "current", distro: str = "flatcar") -> Path:
        """A file of a published release; name may be a suffix like ".ova.sig" (joined to the vendor prefix)."""
        if name.startswith("."):
            name = FILE_PREFIX[distro] + name
        return self.channel_dir(channel) / version / name

    def publish(
        self,
        version: str,
        *,
        channel: str = "stable",
        distro: str = "flatcar",
        disk_bytes: int = 1 << 20,
        seed: int | None = None,
        defect: str | None = None,
        ova: Path | None = None,
        digests: str | None = "per-file",
        digests_signature: str = "both",
        version_prefix: str | None = None,
        current: bool = True,
        signed_at: int | None = None,
    ) -> Path:
        """Publish a signed release; return its directory.

        ``digests``: "per-file" (``<ova>.DIGESTS``, current CI), "combined"
        (``<prefix>.DIGESTS``, older releases) or None. ``digests_signature``:
        "asc" (clearsigned), "sig" (detached), "both". ``ova``: an existing
        file to publish instead of building one. ``version_prefix``: FLATCAR
        or COREOS keys in version.txt (default: the distro's). ``current``:
        also copy the release to ``current/``. ``signed_at``: the time every signature
        of the release says it was made (epoch; default now), as an older build's would.
        """
        prefix = FILE_PREFIX[distro]
        d = self.channel_dir(channel) / version
        d.mkdir(parents=True, exist_ok=True)
        image = d / f"{prefix}.ova"
        if ova is not None:
            _link_or_copy(Path(ova), image)
        else:
            build_ova(image, distro=distro, disk_bytes=disk_bytes, defect=defect,
                      seed=seed if seed is not None else int(hashlib.sha1(version.encode()).hexdigest()[:6], 16))
        self.signer.sign_detached(image, at=signed_at)
        vt = d / "version.txt"
        vt.write_text(version_txt(version, version_prefix or VERSION_KEYS[distro]))
        self.signer.sign_detached(vt, at=signed_at)
        if digests is not None:
            name = image.name + ".DIGESTS" if digests == "per-file" else f"{prefix}.DIGESTS"
            # The combined file of older releases covers several files of the image.
            write_digests([image] if digests == "per-file" else [vt, image], d / name)
            if digests_signature in ("asc", "both"):
                self.signer.clearsign(d / name, at=signed_at)
            if digests_signature in ("sig", "both"):
                self.signer.sign_detached(d / name, at=signed_at)
        if current:
            self.set_current(version, channel=channel)
        return d

    def set_current(self, version: str, *, channel: str = "stable") -> Path:
        src = self.channel_dir(channel) / version
        cur = self.channel_dir(channel) / "current"
        if cur.exists():
            shutil.rmtree(cur)
        cur.mkdir()
        for f in src.iterdir():
            _link_or_copy(f, cur / f.name)
        return cur

    def publish_fcos(
        self, stream: str, version: str, base_url: str, *, disk_bytes: int = 1 << 20, sha256: str | None = None,
        relative: bool = False, product_version: str | None = None,
    ) -> Path:
        """An FCOS build plus <root>/streams/<stream>.json pointing at it; return the OVA.

        ``sha256``: the digest to write into the metadata (default: the real one).
        ``relative``: locations relative to the JSON, as a mirror might write them.
        ``product_version``: the OVF ProductSection's Version (default: ``version``, as the real builds do).
        """
        build = self.root / "prod" / "streams" / stream / "builds" / version / "x86_64"
        build.mkdir(parents=True, exist_ok=True)
        image = build / f"fedora-coreos-{version}-vmware.x86_64.ova"
        build_ova(image, distro="fedora-coreos", disk_bytes=disk_bytes, product_version=product_version or version)
        self.signer.sign_detached(image)
        real = hashlib.sha256(image.read_bytes()).hexdigest()
        rel = image.relative_to(self.root).as_posix()
        location = f"../{rel}" if relative else f"{base_url.rstrip('/')}/{rel}"
        doc = {
            "stream": stream,
            "metadata": {"last-modified": "2025-01-01T00:00:00Z"},
            "architectures": {
                "x86_64": {
                    "artifacts": {
                        "vmware": {
                            "release": version,
                            "formats": {
                                "ova": {
                                    "disk": {
                                        "location": location,
                                        "signature": location + ".sig",
                                        "sha256": sha256 or real,
                                    }
                                }
                            },
                        }
                    }
                }
            },
        }
        streams = self.root / "streams"
        streams.mkdir(exist_ok=True)
        (streams / f"{stream}.json").write_text(json.dumps(doc, indent=2))
        return image


@dataclass
class Request:
    method: str
    path: str
    range: str | None
    status: int = 0


@dataclass
class _Faults:
    drop_after: dict[str, list] = field(default_factory=dict)  # path suffix -> [body bytes before the drop, times left]
    fail: dict[str, list] = field(default_factory=dict)  # path suffix -> [times left, status]
    ignore_range: bool = False
    no_length: set = field(default_factory=set)  # path suffixes served without Content-Length, ended by a close
    redirect: dict[str, str] = field(default_factory=dict)  # path suffix -> Location of a 302


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5  # an idle keep-alive connection ends its thread

    server: "_Server"

    def log_message(self, format, *args):  # quiet
        pass

    def do_HEAD(self):
        self._serve(head=True)

    def do_GET(self):
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        owner = self.server.owner
        path = unquote(urlsplit(self.path).path)
        req = Request(self.command, path, self.headers.get("Range"))
        with owner.lock:
            owner.requests.append(req)
            status = owner._take_failure(path)
        if status:
            return self._reply_empty(req, status)
        location = next((loc for suffix, loc in owner.faults.redirect.items() if path.endswith(suffix)), None)
        if location is not None:
            req.status = 302
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        file = (owner.root / path.lstrip("/")).resolve()
        if not file.is_relative_to(owner.root) or not file.is_file():
            return self._reply_empty(req, 404)
        size = file.stat().st_size
        etag = '"%x-%x"' % (file.stat().st_ino, int(file.stat().st_mtime_ns))
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if rng and not owner.faults.ignore_range and (if_range is None or if_range == etag):
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if not m or int(m.group(1)) >= size:
                req.status = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            status = 206
        length = end - start + 1
        req.status = status
        unsized = any(path.endswith(suffix) for suffix in owner.faults.no_length)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        if unsized:
            self.close_connection = True  # the end of the body is the end of the connection
        else:
            self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return
        with owner.lock:
            drop = owner._take_drop(path)
        with open(file, "rb") as f:
            if drop is None:
                self.wfile.flush()
                self.connection.sendfile(f, start, length)
                return
            f.seek(start)
            self.wfile.write(f.read(min(drop, length)))
            self.wfile.flush()
            # Abrupt end mid-body, as a dropped connection looks to the client.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def _reply_empty(self, req: Request, status: int) -> None:
        req.status = status
        self.send_response(status)
        self.send_header("Content-Length", "0")
        if status in (429, 503):
            self.send_header("Retry-After", "0")
        self.end_headers()


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close() joins the handler threads
    owner: "ReleaseServer"

    def handle_error(self, request, client_address):
        # A client that hangs up (a download cut at its deadline, a killed run) is what many tests do on
        # purpose; socketserver would print its traceback on the worker's stderr. Anything else still prints.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class ReleaseServer:
    """Serves root on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.requests: list[Request] = []
        self.faults = _Faults()
        self.lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "ReleaseServer":
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="release-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(10)
            self._server = None

    def __enter__(self) -> "ReleaseServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- fault switches -------------------------------------------------------------

    def drop_after(self, path_suffix: str, nbytes: int, times: int | None = 1) -> None:
        """The next `times` GETs (None: every GET) of a path ending in path_suffix send nbytes of the body, then drop."""
        with self.lock:
            self.faults.drop_after[path_suffix] = [nbytes, times]

    def no_length(self, path_suffix: str) -> None:
        """Paths ending in path_suffix are sent without Content-Length, ended by closing the connection."""
        with self.lock:
            self.faults.no_length.add(path_suffix)

    def redirect(self, path_suffix: str, location: str) -> None:
        """Paths ending in path_suffix answer 302 to location."""
        with self.lock:
            self.faults.redirect[path_suffix] = location

    def fail(self, path_suffix: str, times: int, status: int = 503) -> None:
        """The next `times` requests of paths ending in path_suffix get `status` with no body."""
        with self.lock:
            self.faults.fail[path_suffix] = [times, status]

    def ignore_range(self, on: bool = True) -> None:
        with self.lock:
            self.faults.ignore_range = on

    def _take_drop(self, path: str) -> int | None:
        for suffix, entry in list(self.faults.drop_after.items()):
            if path.endswith(suffix):
                n, times = entry
                if times is not None:
                    entry[1] -= 1
                    if entry[1] <= 0:
                        del self.faults.drop_after[suffix]
                return n
        return None

    def _take_failure(self, path: str) -> int | None:
        for suffix, entry in self.faults.fail.items():
            if path.endswith(suffix) and entry[0] > 0:
                entry[0] -= 1
                return entry[1]
        return None

    # -- the log --------------------------------------------------------------------

    def gets(self, path_suffix: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == "GET" and r.path.endswith(path_suffix)]

    def clear_log(self) -> None:
        with self.lock:
            self.requests.clear()


__all__ = ["ReleaseServer", "ReleaseTree", "Request", "version_txt"]
