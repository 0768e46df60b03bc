"""Live per-node progress while a run waits: one line per node, its stage and how long it has been at it.

On a terminal the lines are redrawn in place (rich Live, refreshed 4 times a
second, so the elapsed time moves even while no stage changes); piped (cron,
CI), each stage change is one timestamped line, and a node still on its way
is named with its stage at least every HEARTBEAT seconds, so no phase is
silent for longer than that.
"""

from __future__ import annotations

import atexit
import threading
import time
from typing import Callable

from rich.console import Console

HEARTBEAT = 5.0  # seconds, piped: the longest quiet while a node is on its way
FINAL = {"healthy", "deleted", "removed"}  # a node at one of these is not waited on
# The join wait's stages: a healthy node passes them again when a run's last wait looks at every node,
# which is no news; it goes back through them only after a change, which reports its own stage first.
JOIN_WAIT = {"powered on", "tools running", "has IP", "etcd reachable", "member listed"}


class NodeProgress:
    def __init__(self, console: Console, *, interactive: bool, emit: Callable[[str], None]):
        self.console = console
        self.interactive = interactive
        self.emit = emit
        self._nodes: dict[str, list] = {}  # name -> [stage, since]
        self._lock = threading.Lock()
        self._live = None
        self._ticker: threading.Thread | None = None
        self._stopped = threading.Event()
        self._last_line = time.monotonic()

    def stage(self, node: str, stage: str) -> None:
        now = time.monotonic()
        with self._lock:
            known = self._nodes.get(node)
            if known is not None and (known[0] == stage or (known[0] == "healthy" and stage in JOIN_WAIT)):
                return
            self._nodes[node] = [stage, now]
            self._last_line = now
        if self.interactive:
            self._show()
        else:
            self.emit(f"{node}: {stage}")
            self._start_ticker()

    def pause(self) -> None:
        """Give the terminal back (a transfer bar needs it); the next stage change redraws."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def stop(self) -> None:
        self._stopped.set()
        self.pause()

    # -- on a terminal ---------------------------------------------------------------------
    def _show(self) -> None:
        if self._live is not None:
            return
        from rich.live import Live

        self._stopped.clear()
        live = Live(_Rows(self), console=self.console, refresh_per_second=4, transient=False)
        try:
            live.start()
        except Exception:  # another live display holds the terminal: fall back to lines
            self.interactive = False
            return
        self._live = live
        atexit.register(self.stop)

    def rows(self) -> list[tuple[str, str, float]]:
        now = time.monotonic()
        with self._lock:
            return [(n, s, now - since) for n, (s, since) in sorted(self._nodes.items())]

    # -- piped ----------------------------------------------------------------------------
    def _start_ticker(self) -> None:
        if self._ticker is not None and self._ticker.is_alive():
            return
        self._stopped.clear()
        self._ticker = threading.Thread(target=self._tick, name="vmcoreos-progress", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stopped.wait(1.0):
            now = time.monotonic()
            with self._lock:
                waiting = [(n, s, now - since) for n, (s, since) in sorted(self._nodes.items()) if s not in FINAL]
                quiet = now - self._last_line >= HEARTBEAT
                if quiet and waiting:
                    self._last_line = now
            if not waiting:
                return
            if quiet:
                self.emit("waiting: " + "; ".join(f"{n} {s} for {e:.0f}s" for n, s, e in waiting))


class _Rows:
    """What Live draws: evaluated at each refresh, so the elapsed times keep moving."""

    def __init__(self, progress: NodeProgress):
        self.progress = progress

    def __rich__(self):
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, show_header=False, pad_edge=False)
        for name, stage, elapsed in self.progress.rows():
            mark = "✓" if stage in FINAL else "…"
            table.add_row(mark, Text(name), Text(stage), f"{elapsed:4.0f}s")
        return table
