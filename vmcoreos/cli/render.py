"""vmcoreos render, vmcoreos encode: what each node will get, with no vSphere connection."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vmcoreos.cli.common import EXIT_CODES_HELP, ConfigOpt, JsonOpt, reporting
from vmcoreos.cli.terminal import Terminal

DiscoveryEtcdOpt = typer.Option(
    None,
    "--discovery-etcd",
    metavar="URL",
    help="Mint a discovery token on this etcd (v2 keys API, e.g. etcd --enable-v2=true) and bootstrap with it.",
)


def register(app: typer.Typer) -> None:
    app.command(epilog=EXIT_CODES_HELP)(render)
    app.command(epilog=EXIT_CODES_HELP)(encode)


def checked_settings(settings, count: int, term: Terminal, discovery_etcd: str | None = None):
    """Validate the node config against the cluster file (warnings printed), then mint a discovery token.

    The token is minted only once everything else checks out, so a refused
    config never leaves a token behind.
    """
    from dataclasses import replace

    from vmcoreos import discovery
    from vmcoreos.guest import nodeconfig

    if discovery_etcd:
        url = discovery.new_url(discovery_etcd)
        settings = replace(settings, etcd=replace(settings.etcd, bootstrap="discovery", discovery=url))
    user = nodeconfig.load_user_config(settings)
    for warning in user.warnings:
        term.warn(f"{user.source} {warning}")
    configs = nodeconfig.plan(settings, user, count=count)
    if discovery_etcd:
        discovery.create(settings.etcd.discovery, count)
        term.event(f"minted discovery token for {count} members on {discovery._shown(discovery_etcd)}")
    return settings, configs


def render(
    config: Path = ConfigOpt,
    node: Optional[str] = typer.Option(None, "--node", help="Only this node; shows its secrets (file contents, password hashes)."),
    encoded: bool = typer.Option(False, "--encoded", help="Also print the encoded guestinfo config value."),
    count: Optional[int] = typer.Option(None, "--count", "-n", help="Number of nodes (overrides 'count')."),
    discovery_etcd: Optional[str] = DiscoveryEtcdOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Print each node's final config and every guestinfo key it gets; checks the config, never contacts vCenter."""
    term = Terminal(quiet=json_out)
    with reporting(term):
        from vmcoreos.errors import ConfigError
        from vmcoreos.guest import redact
        from vmcoreos.settings import load_cluster_file

        settings = load_cluster_file(config)
        n = count if count is not None else settings.count
        if n < 1:
            raise ConfigError("--count must be at least 1")
        settings, configs = checked_settings(settings, n, term, discovery_etcd)
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
                if key.endswith(".config.data"):
                    if not encoded:
                        value = f"<the config above, {len(value)} bytes as {c.guestinfo[key + '.encoding']}; --encoded prints it>"
                    elif masked:
                        value = f"<redacted: {len(value)} bytes, holds secrets; use --node {c.name} to show>"
                keys[key] = value
            out.append({"name": c.name, "index": c.index, "address": str(c.address) if c.address else None,
                        "kind": c.kind, "digest": c.digest, "config": text, "guestinfo": keys})
        if json_out:
            term.json(out)
            return
        for i, item in enumerate(out):
            head = f"=== {item['name']}" + (f" {item['address']}" if item["address"] else "")
            lines = [head + f" ({item['kind']}, digest {item['digest']}) ===", item["config"].rstrip("\n"),
                     "--- guestinfo"]
            lines += [f"{k} = {v}" for k, v in item["guestinfo"].items()]
            term.text(("\n" if i else "") + "\n".join(lines))


def encode(
    file: Path = typer.Argument(..., dir_okay=False, help="Config file to encode (cloud-config or Ignition JSON)."),
    encoding: str = typer.Option("gzip+base64", "--encoding", help="gzip+base64 or base64."),
) -> None:
    """Print FILE encoded for guestinfo.*.config.data (replaces `gzip -c FILE | base64 -w0`)."""
    term = Terminal()
    with reporting(term):
        from vmcoreos.errors import ConfigError
        from vmcoreos.guest import guestinfo
        from vmcoreos.guest.encoding import ENCODINGS
        from vmcoreos.guest.encoding import encode as encode_bytes

        if encoding not in ENCODINGS:
            raise ConfigError(f"--encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {file}: {exc.strerror}") from None
        value = encode_bytes(data, encoding)
        if len(value) > guestinfo.MAX_VALUE_BYTES:
            term.warn(f"the encoded value is {len(value)} bytes, over the {guestinfo.MAX_VALUE_BYTES}-byte guestinfo"
                      " limit; the guest would not receive it")
        term.text(value)
