"""vmcoreos deploy."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vmcoreos.cli.common import (
    EXIT_CODES_HELP, AdoptTemplateOpt, CaFileOpt, ConfigOpt, InsecureOpt, JsonOpt, PasswordFileOpt, QuietOpt, ThumbprintOpt, UrlOpt,
    UserOpt, connection, reporting, with_image_flags,
)
from vmcoreos.cli.render import DiscoveryEtcdOpt, checked_settings
from vmcoreos.cli.terminal import Terminal
from vmcoreos.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command(epilog=EXIT_CODES_HELP)(deploy)


def deploy(
    config: Path = ConfigOpt,
    count: Optional[int] = typer.Option(None, "--count", "-n", help="Number of nodes (overrides 'count')."),
    ova: Optional[str] = typer.Option(None, "--ova", help="OVA path or URL (overrides image.ova)."),
    sig: Optional[str] = typer.Option(None, "--sig", help="Detached signature of the OVA, path or URL (default: OVA + .sig)."),
    trusted_key: list[Path] = typer.Option([], "--trusted-key", metavar="FILE", help="Extra OpenPGP public key to trust (repeatable)."),
    insecure_skip_verify: bool = typer.Option(False, "--insecure-skip-verify", help="Do not verify the image signature (dangerous)."),
    parallel: int = typer.Option(4, "--parallel", min=1, max=32, help="Node operations run at once."),
    rollback: bool = typer.Option(
        False, "--rollback", help="On failure, remove the nodes this run created (default: keep them for inspection)."
    ),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds to wait for nodes to join (overrides wait.timeout)."),
    discovery_etcd: Optional[str] = DiscoveryEtcdOpt,
    adopt_template: bool = AdoptTemplateOpt,
    url: Optional[str] = UrlOpt,
    username: Optional[str] = UserOpt,
    password_file: Optional[Path] = PasswordFileOpt,
    insecure: Optional[bool] = InsecureOpt,
    ca_file: Optional[Path] = CaFileOpt,
    thumbprint: Optional[str] = ThumbprintOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Create the cluster's nodes (or converge to --count) and wait until each is a healthy etcd member."""
    term = Terminal(quiet=quiet)  # --json keeps stdout for the summary; events still go to stderr
    with reporting(term):
        from dataclasses import replace

        from vmcoreos import cluster
        from vmcoreos.settings import load_cluster_file

        settings = with_image_flags(
            load_cluster_file(config), term, ova=ova, sig=sig, trusted_key=trusted_key,
            insecure_skip_verify=insecure_skip_verify,
        )
        if timeout is not None:
            settings = replace(settings, wait_timeout=timeout)
        n = count if count is not None else settings.count
        if n < 1:
            raise ConfigError("--count must be at least 1")
        conn = connection(url, username, password_file, insecure, ca_file, thumbprint, term)
        # Node configs are checked (warnings printed) before anything else; a discovery token is minted last.
        settings, _ = checked_settings(settings, n, term, discovery_etcd)
        result = cluster.deploy(
            settings, conn, count=n, reporter=term, parallel=parallel, rollback=rollback, adopt_template=adopt_template
        )
        if json_out:
            term.json(result.as_dict())
        else:
            term.table(
                ["NODE", "ACTION", "POWER", "IP", "ETCD MEMBER", "HEALTH"],
                [
                    [s.name, s.action, s.power, s.ip, s.member_id, "healthy" if s.healthy else s.stage]
                    for s in result.nodes
                ],
            )
            if result.removed:
                term.out.print(f"removed {', '.join(result.removed)}")


