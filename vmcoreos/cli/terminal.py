"""The only place that prints: events, progress bars, tables, one-line errors.

On a terminal, transfers get a progress bar (bytes, rate, ETA); without one
(cron), every event is one plain line on stderr and transfers log a line at
each tenth, so logs stay short and greppable.
"""

from __future__ import annotations

import json
import sys

# The version of every --json document; it grows only by adding fields, and changes when one changes meaning.
JSON_SCHEMA = 1
import threading
import time
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:  # loaded when a bar or a table is first shown: a no-op run shows neither
    from rich.progress import Progress


class Terminal:
    def __init__(self, *, quiet: bool = False, verbose: bool = False):
        self.quiet = quiet
        self.verbose = verbose
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.out = Console(highlight=False, soft_wrap=True)
        self.interactive = sys.stderr.isatty()
        self.json_errors = False  # --json: a failure is also an error object on stdout
        self._progress: Progress | None = None
        self._task = None
        self._label = None
        self._logged_tenth = -1
        self._lock = threading.RLock()

    # Reporter protocol -----------------------------------------------------
    def event(self, message: str) -> None:
        if self.quiet:
            return
        with self._lock:  # node operations run in threads; one event, one whole line
            if self.interactive:
                self.err.print(f"• {message}", markup=False)
            else:
                sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} vmcoreos: {message}\n")
                sys.stderr.flush()

    def transfer(self, label: str, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.interactive:
            if self._progress is None or self._label != label:
                from rich.progress import (
                    BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn,
                )

                self.finish_transfer()
                self._progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                    console=self.err,
                    transient=False,
                )
                self._progress.start()
                self._task = self._progress.add_task(label, total=total)
                self._label = label
            self._progress.update(self._task, completed=done, total=total)
            if done >= total:
                self.finish_transfer()
        else:
            tenth = int(done * 10 / max(total, 1))
            if label != self._label:
                self._label, self._logged_tenth = label, -1
            if tenth > self._logged_tenth and (tenth % 5 == 0 or done >= total):
                self._logged_tenth = tenth
                self.event(f"{label}: {done * 100 // max(total, 1)}% of {total / 1048576:.1f} MiB")

    def finish_transfer(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._label = None

    # Output ----------------------------------------------------------------
    def error(self, message: str, findings: list[str] | None = None) -> None:
        self.finish_transfer()
        print(f"vmcoreos: error: {message}", file=sys.stderr, flush=True)
        for line in findings or []:
            print(f"  {line}", file=sys.stderr, flush=True)

    def failure(self, message: str, exit_code: int, findings: list[str] | None = None) -> None:
        """A command failed: the one line on stderr, and with --json the same as an object on stdout."""
        self.error(message, findings)
        if self.json_errors:
            error = {"message": message, "exit_code": exit_code}
            if findings:
                error["findings"] = list(findings)
            self.json({"error": error})

    def note(self, message: str) -> None:
        """One plain line on stderr, no timestamp: a report meant to be read or grepped whole."""
        if not self.quiet:
            print(f"vmcoreos: {message}", file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        print(f"vmcoreos: WARNING: {message}", file=sys.stderr, flush=True)

    def json(self, data: dict) -> None:
        """One JSON document on stdout, schema first."""
        print(json.dumps({"schema": JSON_SCHEMA, **data}, indent=2, sort_keys=False, default=str), flush=True)

    def text(self, data: str) -> None:
        """Verbatim text on stdout (configs, encoded values): no markup, no wrapping."""
        sys.stdout.write(data if data.endswith("\n") else data + "\n")
        sys.stdout.flush()

    def fields(self, items: dict) -> None:
        """`name  value` lines on stdout, never wrapped (a SHA-512 stays on one line for grep and cut)."""
        width = max((len(k) for k in items), default=0)
        for key, value in items.items():
            print(f"{key:<{width}}  {'' if value is None else value}", flush=True)

    def table(self, columns, rows: list[list[str]], *, wide: bool = False) -> None:
        """One row per line, values never wrapped or cut (cli/tables.py). On a terminal narrower than the
        table, the least important columns are shortened, then left out; wide (-o wide) keeps them all.
        Anywhere else (a pipe, cron, CI) every column at full width."""
        from vmcoreos.cli.tables import layout

        width = self.out.width if self.out.is_terminal and not wide else None
        for line in layout(columns, rows, width):
            print(line, flush=True)
