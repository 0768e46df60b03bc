"""node_exporter's textfile collector, the real one (Debian's prometheus-node-exporter), as a monitor reads a metrics file."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(directory: Path) -> str:
    """What node_exporter serves after reading every *.prom in directory (its textfile collector only)."""
    if not shutil.which(NODE_EXPORTER):
        raise AssertionError(f"{NODE_EXPORTER} is missing; run `make apt` (Debian package prometheus-node-exporter)")
    port = _free_port()
    proc = subprocess.Popen(
        [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
         "--collector.textfile", f"--collector.textfile.directory={directory}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    return resp.read().decode()
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"node_exporter did not serve: {proc.stderr.read() if proc.poll() is not None else 'timeout'}")
                time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()


_SAMPLE = re.compile(r'^(\w+)(?:\{(.*)\})? (\S+)$')


def samples(exposition: str, prefix: str) -> dict[tuple[str, frozenset], float]:
    """{(metric, labels): value} for the metrics named prefix*, from node_exporter's own output."""
    out = {}
    for line in exposition.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1).startswith(prefix):
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def scrape_error(exposition: str) -> float:
    """node_textfile_scrape_error: 1 when a file in the directory could not be parsed."""
    m = re.search(r"^node_textfile_scrape_error (\S+)$", exposition, re.M)
    assert m, exposition[-2000:]
    return float(m.group(1))
