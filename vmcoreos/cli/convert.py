"""vmcoreos convert: a CoreOS Container Linux cloud-config rewritten for Flatcar."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vmcoreos.cli.common import EXIT_CODES_HELP, JsonOpt, reporting
from vmcoreos.cli.terminal import Terminal


def register(app: typer.Typer) -> None:
    app.command(epilog=EXIT_CODES_HELP)(convert)


def convert(
    file: Path = typer.Argument(..., dir_okay=False, help="The cloud-config to convert (never changed)."),
    to: str = typer.Option(..., "--to", help="Target: flatcar (etcd-member.service, no fleet)."),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", metavar="OUT", help="Write the result here; '-' or none prints it on stdout."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report (and the config, without -o) as JSON."),
) -> None:
    """Rewrite a CoreOS-era cloud-config (coreos.etcd2 / coreos.etcd, fleet) for Flatcar; one report line per change on stderr."""
    term = Terminal(quiet=json_out)
    with reporting(term):
        import os
        import tempfile

        from vmcoreos.errors import ConfigError
        from vmcoreos.guest import convert as core

        if to != "flatcar":
            raise ConfigError(f"--to {to!r} is not supported; use --to flatcar")
        to_stdout = output in (None, "-")
        if not to_stdout and Path(output).resolve() == file.resolve():
            raise ConfigError(f"-o {output} is the input itself and convert never overwrites it; write a new file,"
                              f" e.g. -o {core.suggested_output(str(file))}")
        try:
            text = file.read_text()
        except FileNotFoundError:
            raise ConfigError(f"{file} does not exist; pass the path of your cloud-config") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}") from None
        result = core.to_flatcar(text, source=str(file))
        if not to_stdout:
            target = Path(output)
            # Written whole or not at all: a half-written config would deploy half a cluster.
            tmp = None
            try:
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
                with os.fdopen(fd, "w") as fh:
                    fh.write(result.text)
                os.replace(tmp, target)
            except OSError as exc:
                if tmp is not None and os.path.exists(tmp):
                    os.unlink(tmp)
                raise ConfigError(f"cannot write {output}: {exc.strerror}; pick another -o") from None
        if json_out:
            data = {"input": str(file), "output": None if to_stdout else output,
                    "changes": [c.as_dict() for c in result.changes]}
            if to_stdout:
                data["config"] = result.text
            term.json(data)
            return
        for change in result.changes:
            term.note(f"{file} {change}")
        if to_stdout:
            term.text(result.text)
