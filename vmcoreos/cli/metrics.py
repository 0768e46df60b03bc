"""--metrics-file: what an unattended run leaves for a monitor, in node_exporter's textfile format.

One file can hold several commands and clusters (a nightly rebuild and an
hourly status): each run rewrites its own (command, cluster) series and
keeps the others, and keeps its own last success time when it fails, so
"no successful rebuild in 2 days" is one alert rule:

    time() - vmcoreos_last_success_timestamp_seconds{command="rebuild"} > 2 * 86400

The file is replaced whole (a temporary file in the same directory, then
rename), so the collector never reads half of it, and runs that end at the
same moment take turns on a lock file beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
from pathlib import Path

PREFIX = "vmcoreos_"
METRICS = {
    "last_run_timestamp_seconds": "When the last run ended (Unix time).",
    "last_success_timestamp_seconds": "When the last run that exited 0 ended (Unix time).",
    "last_failure_timestamp_seconds": "When the last run that exited non-zero ended (Unix time).",
    "last_run_duration_seconds": "How long the last run took.",
    "last_run_exit_code": "The last run's exit code (see `vmcoreos COMMAND --help`).",
    "last_run_nodes_replaced": "Nodes the last run created, rebuilt or removed.",
}
_LINE = re.compile(r'^vmcoreos_(\w+)\{command="((?:[^"\\]|\\.)*)",cluster="((?:[^"\\]|\\.)*)"\} (\S+)$')


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def read(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """The series a metrics file holds, by (command, cluster); lines that are not ours are dropped."""
    series: dict[tuple[str, str], dict[str, float]] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text(errors="replace").splitlines():
            m = _LINE.match(line)
            if m and m.group(1) in METRICS:
                with contextlib.suppress(ValueError):
                    series.setdefault((_unescape(m.group(2)), _unescape(m.group(3))), {})[m.group(1)] = float(m.group(4))
    return series


def render(series: dict[tuple[str, str], dict[str, float]]) -> str:
    lines = []
    for metric, help_text in METRICS.items():
        lines += [f"# HELP {PREFIX}{metric} {help_text}", f"# TYPE {PREFIX}{metric} gauge"]
        for (command, cluster), values in sorted(series.items()):
            if metric in values:
                lines.append(f'{PREFIX}{metric}{{command="{_escape(command)}",cluster="{_escape(cluster)}"}}'
                             f" {values[metric]:.15g}")
    return "\n".join(lines) + "\n"


def record(path: Path, *, command: str, cluster: str, code: int, started: float, ended: float, replaced: int) -> None:
    """Rewrite path with this run's series updated."""
    path = Path(path)
    with open(path.parent / f".{path.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        series = read(path)
        values = series.setdefault((command, cluster), {})
        values.update(last_run_timestamp_seconds=round(ended, 3), last_run_duration_seconds=round(ended - started, 3),
                      last_run_exit_code=code, last_run_nodes_replaced=replaced)
        values["last_success_timestamp_seconds" if code == 0 else "last_failure_timestamp_seconds"] = round(ended, 3)
        _replace(path, render(series))


def _replace(path: Path, text: str) -> None:
    # The temporary name does not end in .prom, so the collector never reads it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # node_exporter runs as its own user
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
