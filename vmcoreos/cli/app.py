"""The typer app: parses, prints, and maps errors to exit codes. No vSphere work here.

Each command lives in its own module and registers itself; command bodies
import the core lazily so `--help` stays fast.
"""

from __future__ import annotations

import sys

import typer

from vmcoreos.cli import convert, deploy, images, init, lifecycle, render
from vmcoreos.errors import ExitCode

app = typer.Typer(
    name="vmcoreos",
    help="Stand up and maintain CoreOS-family (Flatcar, CoreOS, Fedora CoreOS) clusters on VMware vSphere.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Stand up and maintain CoreOS-family clusters on VMware vSphere."""


for module in (deploy, lifecycle, images, render, convert, init):
    module.register(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("vmcoreos: error: interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)


if __name__ == "__main__":
    main()
