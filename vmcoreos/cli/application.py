"""The one I/O object of a CLI run: the terminal itself, plus prompts, error mapping and the vCenter connection.

Typer's context carries it (ctx.obj); commands ask App.of(ctx) for it
instead of building their own Terminal, reading isatty or calling
typer.confirm. The global options (-v, -q, --json, --metrics-file and the
connection options) land here whether they were typed before or after the
command (cli/options.py).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Iterator

import typer

from vmcoreos.cli.terminal import Terminal
from vmcoreos.errors import ConfigError, ExitCode, VmcoreosError
from vmcoreos import environment
from vmcoreos.environment import ENV_DEBUG


def redact_urls(text: str) -> str:
    """text with the credentials of every URL in it replaced by *** (the package's one scrubber, vmcoreos.text)."""
    from vmcoreos.text import redact

    return redact(text, "***")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


class App(Terminal):
    def __init__(self) -> None:
        super().__init__()
        self.command = ""
        self.connection_options: dict = {}
        # Given before the command (the root's options); a command's own flags add to them.
        self.root_flags: dict = {}
        self.metrics_file: Path | None = None
        self.cluster = ""  # the metrics' cluster label, once the cluster file is read
        self.replaced = 0  # nodes created, replaced or removed: the metrics' nodes_replaced
        self.changing = False  # set by applying(): from here an interrupt may leave work to undo

    @classmethod
    def of(cls, ctx: typer.Context) -> "App":
        root = ctx.find_root()
        if not isinstance(root.obj, cls):
            root.obj = cls()
        if ctx is not root and ctx.info_name:
            root.obj.command = ctx.info_name
        return root.obj

    @contextlib.contextmanager
    def run(self, *, quiet: bool | None = False, json_out: bool | None = False) -> Iterator["App"]:
        """A command body: output settings for it, typed errors mapped to one line and an exit code.

        json_out: stdout carries one JSON document, the result or, on failure, the error; None: the
        command has no --json, so one given before the command is a usage error.
        """
        if json_out is None and self.root_flags.get("json_out"):
            self.error(f"{self.command} has no --json; see 'vmcoreos {self.command} --help'")
            raise typer.Exit(ExitCode.USAGE)
        self.json_errors = bool(json_out or self.root_flags.get("json_out"))
        self.quiet = bool(quiet or self.root_flags.get("quiet"))
        started, code = time.time(), ExitCode.FAILED
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            with self._mapped_errors():
                yield self
            code = ExitCode.OK
        except typer.Exit as exc:
            code = exc.exit_code
            raise
        finally:
            self.finish_transfer()
            signal.signal(signal.SIGTERM, previous)
            if self.metrics_file is not None:
                self._write_metrics(started, code)

    @property
    def json_out(self) -> bool:
        """--json, given before or after the command."""
        return self.json_errors

    def applying(self) -> None:
        """The plan is settled and the change begins: an interrupt from here on may have work to undo."""
        self.changing = True

    @contextlib.contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """Typed errors become one line and their exit code; never a traceback."""
        try:
            yield
        except VmcoreosError as exc:
            self.failure(redact_urls(exc.message), exc.exit_code, exc.findings)
            raise typer.Exit(exc.exit_code)
        except KeyboardInterrupt:
            said = ("interrupted; work in progress was rolled back where it could be" if self.changing
                    else "interrupted before any change; nothing was changed")
            self.failure(said, ExitCode.INTERRUPTED)
            raise typer.Exit(ExitCode.INTERRUPTED)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if environment.debug():
                raise
            # A bug of ours, not the user's: still one line, with a way to get the details.
            # Library exceptions quote URLs as given, credentials included (requests' InvalidURL does).
            self.failure(
                redact_urls(f"unexpected {type(exc).__name__}: {exc}; rerun with {ENV_DEBUG}=1 and report the traceback"),
                ExitCode.FAILED,
            )
            raise typer.Exit(ExitCode.FAILED)

    def _write_metrics(self, started: float, code: int) -> None:
        from vmcoreos.cli import metrics

        try:
            metrics.record(self.metrics_file, command=self.command, cluster=self.cluster, code=int(code),
                           started=started, ended=time.time(), replaced=self.replaced)
        except OSError as exc:
            # The run's own outcome stands; a monitor that reads nothing alerts on staleness anyway.
            self.warn(f"could not write --metrics-file {self.metrics_file}: {exc.strerror}")

    # -- output ----------------------------------------------------------------------
    def warnings(self, messages) -> None:
        for message in messages:
            self.warn(message)

    # -- prompts ---------------------------------------------------------------------
    def confirm(self, question: str, *, refusal: str, preface=()) -> None:
        """Ask on the terminal (after the preface lines, on stderr); no terminal to ask on is refusal
        (ConfigError); a 'no' says nothing was changed and exits 0."""
        if not sys.stdin.isatty():
            raise ConfigError(refusal)
        for line in preface:
            self.note(line)
        if not typer.confirm(question, default=False):
            print("vmcoreos: answered no; nothing was changed", file=sys.stderr, flush=True)
            raise typer.Exit(ExitCode.OK)

    # -- vCenter -------------------------------------------------------------------
    def connection(self):
        """The vCenter connection from the declared options and the environment, its TLS notices shown."""
        from vmcoreos.connection import connection_from

        conn = connection_from(**self.connection_options)
        for notice in conn.notices:
            self.warn(notice)
        if conn.insecure:
            self.warn(f"TLS verification of {conn.host} is off (--insecure); anyone on the path can read the password")
        return conn
