"""vmcoreos thumbprint: the certificate thumbprints a vCenter presents, to pin with --thumbprint (govc about.cert -thumbprint)."""

from __future__ import annotations

from typing import Optional

import typer

from vmcoreos.cli.application import App
from vmcoreos.cli.common import JsonOpt, exit_codes
from vmcoreos.environment import ENV_URL, value as env_value


def register(app: typer.Typer) -> None:
    app.command(epilog=exit_codes(0, 1, 2, c1="the server could not be reached or showed no certificate"))(thumbprint)


def thumbprint(
    ctx: typer.Context,
    url: Optional[str] = typer.Argument(
        None, metavar="[URL]", help=f"vCenter URL or host[:port] (default: --url before the command, or ${ENV_URL[0]})."
    ),
    json_out: bool = JsonOpt,
) -> None:
    """Print the SHA-256 and SHA-1 thumbprints of the certificate vCenter presents; pin one with --thumbprint.

    The certificate is read without being trusted and nothing is sent to the server, so compare the
    thumbprint with the one vCenter's own console shows before pinning it.
    """
    app = App.of(ctx)
    with app.run(quiet=json_out, json_out=json_out):
        from urllib.parse import urlsplit

        from vmcoreos.errors import ConfigError, VSphereError
        from vmcoreos.vsphere import probe

        given = url or app.connection_options.get("url") or env_value(ENV_URL)
        if not given:
            raise ConfigError(f"no vCenter given; pass its URL (`vmcoreos thumbprint https://vcenter.example.com`)"
                              f" or set {ENV_URL[0]}")
        parts = urlsplit(given if "://" in given else "https://" + given)
        try:
            host, port = parts.hostname, parts.port or 443
        except ValueError:
            host = None
        if not host:
            raise ConfigError(f"{given!r} is not a URL or host[:port]; e.g. https://vcenter.example.com/sdk")
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            prints = probe.thumbprints(host, port)
        except (OSError, ValueError) as exc:
            raise VSphereError(f"cannot read the certificate of {where}: {getattr(exc, 'strerror', None) or exc};"
                               " check the URL and the network") from None
        if app.json_out:
            app.json({"host": host, "port": port, **prints})
        else:
            app.fields({"SHA-256": prints["sha256"], "SHA-1": prints["sha1"]})
