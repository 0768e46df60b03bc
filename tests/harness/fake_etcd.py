"""A fake etcd gateway for the lock's API-prefix tests: etcd 3.3 serves /v3beta/ only (3.2: /v3alpha/),
or an endpoint that answers 404 to everything. Enough of the lease and kv calls for EtcdLock; every path asked is
logged. ``stop()`` closes the socket and joins the thread."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeEtcd:
    def __init__(self, version: str | None = "3.3.27"):
        self.version = version  # None: answers 404 to everything
        self.prefix = {"3.3": "/v3beta", "3.2": "/v3alpha"}.get(".".join((version or "").split(".")[:2]), "/v3")
        self.paths: list[str] = []
        self.kv: dict[str, str] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.paths.append(self.path)
                if fake.version and self.path == "/version":
                    return self._reply(200, {"etcdserver": fake.version, "etcdcluster": "3.3.0"})
                self._reply(404, {"error": "404 page not found"})

            def do_POST(self):
                fake.paths.append(self.path)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if not fake.version or not self.path.startswith(fake.prefix + "/"):
                    return self._reply(404, {"error": "404 page not found"})
                call = self.path[len(fake.prefix):]
                if call == "/lease/grant":
                    return self._reply(200, {"ID": "7587848312345", "TTL": str(body.get("TTL", 60))})
                if call == "/lease/keepalive":
                    return self._reply(200, {"result": {"ID": body.get("ID"), "TTL": "60"}})
                if call == "/lease/revoke":
                    return self._reply(200, {})
                if call == "/kv/txn":
                    key = body["compare"][0]["key"]
                    if key in fake.kv:
                        return self._reply(200, {"succeeded": False})
                    fake.kv[key] = body["success"][0]["request_put"]["value"]
                    return self._reply(200, {"succeeded": True})
                if call == "/kv/range":
                    key = body["key"]
                    kvs = [{"key": key, "value": fake.kv[key]}] if key in fake.kv else []
                    return self._reply(200, {"kvs": kvs} if kvs else {})
                self._reply(404, {"error": "404 page not found"})

            def _reply(self, status, data):
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def holder(self, key: str) -> str | None:
        value = self.kv.get(base64.b64encode(key.encode()).decode())
        return base64.b64decode(value).decode() if value else None

    def __enter__(self) -> "FakeEtcd":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
