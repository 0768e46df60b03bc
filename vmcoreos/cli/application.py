"""The one I/O object of a CLI run: output (through Terminal), prompts, JSON and the vCenter connection.

Typer's context carries it (ctx.obj); commands ask App.of(ctx) for it
instead of building their own Terminal, reading isatty or calling
typer.confirm.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import typer

from vmcoreos.cli.common import reporting
from vmcoreos.cli.terminal import Terminal
from vmcoreos.errors import ConfigError, ExitCode


class App:
    def __init__(self) -> None:
        self.term = Terminal()
        self.connection_options: dict = {}

    @classmethod
    def of(cls, ctx: typer.Context) -> "App":
        root = ctx.find_root()
        if not isinstance(root.obj, cls):
            root.obj = cls()
        return root.obj

    @contextlib.contextmanager
    def run(self, *, quiet: bool = False, json_out: bool = False) -> Iterator[Terminal]:
        """A command body: output settings for it, typed errors mapped to one line and an exit code.

        json_out: stdout carries one JSON document, the result or, on failure, the error.
        """
        self.term.quiet = quiet
        self.term.json_errors = json_out
        with reporting(self.term):
            yield self.term

    # -- output ----------------------------------------------------------------------
    def warn(self, message: str) -> None:
        self.term.warn(message)

    def warnings(self, messages) -> None:
        for message in messages:
            self.term.warn(message)

    def json(self, data: dict) -> None:
        self.term.json(data)

    # -- prompts ---------------------------------------------------------------------
    def confirm(self, question: str, *, refusal: str, preface=()) -> None:
        """Ask on the terminal (after the preface lines, on stderr); no terminal to ask on is refusal
        (ConfigError), a 'no' exits 1."""
        if not sys.stdin.isatty():
            raise ConfigError(refusal)
        for line in preface:
            self.term.note(line)
        if not typer.confirm(question, default=False):
            raise typer.Exit(ExitCode.FAILED)

    # -- vCenter -------------------------------------------------------------------
    def connection(self):
        """The vCenter connection from the declared options and the environment, its TLS notices shown."""
        from vmcoreos.connection import connection_from

        conn = connection_from(**self.connection_options)
        for notice in conn.notices:
            self.term.warn(notice)
        if conn.insecure:
            self.term.warn(f"TLS verification of {conn.host} is off (--insecure); anyone on the path can read the password")
        return conn
