"""vmcoreos init: a commented cluster file and node config to start from."""

from __future__ import annotations

from pathlib import Path

import typer

from vmcoreos.cli.common import EXIT_CODES_HELP, reporting
from vmcoreos.cli.terminal import Terminal

# Shipped inside the package (vmcoreos/examples), so they exist wherever vmcoreos is installed.
FILES = ("cluster.yaml", "node.yaml")


def register(app: typer.Typer) -> None:
    app.command(epilog=EXIT_CODES_HELP)(init)


def init(
    directory: Path = typer.Argument(Path("."), file_okay=False, help="Where to write cluster.yaml and node.yaml."),
) -> None:
    """Write a commented cluster.yaml and a Flatcar node.yaml (etcd-member.service) to start from; never overwrites."""
    term = Terminal()
    with reporting(term):
        from importlib.resources import files

        from vmcoreos.errors import ConfigError

        existing = [name for name in FILES if (directory / name).exists()]
        if existing:
            raise ConfigError(f"{directory / existing[0]} already exists and init never overwrites; run init in an"
                              " empty directory (`vmcoreos init DIR`)")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for name in FILES:
                (directory / name).write_text(files("vmcoreos.examples").joinpath(name).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot write into {directory}: {exc.strerror}; pick another directory") from None
        for name in FILES:
            term.note(f"wrote {directory / name}")
        term.note(f"next: edit both, then `vmcoreos render -c {directory / 'cluster.yaml'}`")
