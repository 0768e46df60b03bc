"""vmcoreos render, encode, convert and init: the commands that act on config files, never on vCenter."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vmcoreos.cli.application import App
from vmcoreos.cli.common import ConfigOpt, CountOpt, DiscoveryEtcdOpt, JsonOpt, exit_codes

# Shipped inside the package (vmcoreos/examples), so they exist wherever vmcoreos is installed.
FILES = ("cluster.yaml", "node.yaml")


def register(app: typer.Typer) -> None:
    app.command(epilog=exit_codes(0, 1, 2, c1="--discovery-etcd could not mint a token"))(render)
    app.command(epilog=exit_codes(0, 2))(encode)
    app.command(epilog=exit_codes(0, 2))(convert)
    app.command(epilog=exit_codes(0, 2))(init)


def render(
    ctx: typer.Context,
    config: Path = ConfigOpt,
    node: Optional[str] = typer.Option(None, "--node", help="Only this node; shows its secrets (file contents, password hashes)."),
    encoded: bool = typer.Option(False, "--encoded", help="Also print the encoded guestinfo config value."),
    count: Optional[int] = CountOpt,
    discovery_etcd: Optional[str] = DiscoveryEtcdOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Print each node's final config and every guestinfo key it gets; checks the config, never contacts vCenter."""
    app = App.of(ctx)
    with app.run(quiet=json_out, json_out=json_out) as term:
        from vmcoreos.prepare import claim_discovery, prepare
        from vmcoreos.errors import ConfigError
        from vmcoreos.guest import redact
        from vmcoreos.clusterfile import load_cluster_file
        from vmcoreos.settings import Overrides

        json_out = app.json_out
        settings = load_cluster_file(config)
        prepared = prepare(settings, Overrides(count=count, discovery_etcd=discovery_etcd))
        app.warnings(prepared.warnings)
        claim_discovery(prepared, term)
        settings, configs, n = prepared.settings, list(prepared.configs), prepared.settings.count
        if node is not None:
            configs = [c for c in configs if c.name == node]
            if not configs:
                names = ", ".join(settings.node_names(n))
                raise ConfigError(f"no node {node!r} among the {n} planned: {names}")
        out = []
        for c in configs:
            shown = node == c.name
            text, masked = (c.config_text, 0) if shown else redact.redacted(c, f"use --node {c.name} to show")
            keys = {}
            for key, value in c.guestinfo.items():
                if key == c.data_key:
                    if not encoded:
                        value = f"<the config above, {len(value)} bytes as {c.guestinfo[key + '.encoding']}; --encoded prints it>"
                    elif masked:
                        value = f"<redacted: {len(value)} bytes, holds secrets; use --node {c.name} to show>"
                keys[key] = value
            out.append({"name": c.name, "index": c.index, "address": str(c.address) if c.address else None,
                        "mac": c.mac, "kind": c.kind, "digest": c.digest, "config": text, "guestinfo": keys})
        if json_out:
            term.json({"nodes": out})
            return
        for i, item in enumerate(out):
            head = f"=== {item['name']}" + (f" {item['address']}" if item["address"] else "")
            lines = [head + f" ({item['kind']}, digest {item['digest']}) ===", item["config"].rstrip("\n"),
                     "--- guestinfo"]
            lines += [f"{k} = {v}" for k, v in item["guestinfo"].items()]
            term.text(("\n" if i else "") + "\n".join(lines))


def encode(
    ctx: typer.Context,
    file: Path = typer.Argument(
        ..., dir_okay=False, allow_dash=True, help="Config file to encode (cloud-config or Ignition JSON); '-' reads stdin."
    ),
    encoding: str = typer.Option("gzip+base64", "--encoding", help="gzip+base64 or base64."),
) -> None:
    """Print FILE encoded for guestinfo.*.config.data (replaces `gzip -c FILE | base64 -w0`)."""
    with App.of(ctx).run(json_out=None) as term:
        import sys

        from vmcoreos.errors import ConfigError
        from vmcoreos.guest import guestinfo
        from vmcoreos.guest.encoding import ENCODINGS
        from vmcoreos.guest.encoding import encode as encode_bytes

        if encoding not in ENCODINGS:
            raise ConfigError(f"--encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
        try:
            data = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {file}: {exc.strerror}") from None
        value = encode_bytes(data, encoding)
        if len(value) > guestinfo.MAX_VALUE_BYTES:
            term.warn(f"the encoded value is {len(value)} bytes, over the {guestinfo.MAX_VALUE_BYTES}-byte guestinfo"
                      " limit; the guest would not receive it")
        term.text(value)


def convert(
    ctx: typer.Context,
    file: Path = typer.Argument(..., dir_okay=False, help="The cloud-config to convert (never changed)."),
    to: str = typer.Option("flatcar", "--to", help="Target: flatcar (etcd-member.service, no fleet), the only one."),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", metavar="OUT", help="Write the result here; '-' or none prints it on stdout."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report (and the config, without -o) as JSON."),
) -> None:
    """Rewrite a CoreOS-era cloud-config (coreos.etcd2 / coreos.etcd, fleet) for Flatcar; one report line per change on stderr."""
    app = App.of(ctx)
    with app.run(quiet=json_out, json_out=json_out) as term:
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
        json_out = app.json_out
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


def init(
    ctx: typer.Context,
    directory: Path = typer.Argument(Path("."), file_okay=False, help="Where to write cluster.yaml and node.yaml."),
) -> None:
    """Write a commented cluster.yaml and a Flatcar node.yaml (etcd-member.service) to start from; never overwrites."""
    with App.of(ctx).run(json_out=None) as term:
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
