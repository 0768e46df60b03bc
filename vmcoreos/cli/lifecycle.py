"""vmcoreos status, rebuild and destroy: the commands cron and lab teardown use."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from vmcoreos.cli.common import (
    EXIT_CODES_HELP, AdoptTemplateOpt, CaFileOpt, ConfigOpt, InsecureOpt, JsonOpt, PasswordFileOpt, QuietOpt, ThumbprintOpt, UrlOpt,
    UserOpt, connection, reporting, with_image_flags,
)
from vmcoreos.cli.terminal import Terminal
from vmcoreos.errors import ConfigError, ExitCode


def register(app: typer.Typer) -> None:
    app.command(epilog="Exit codes: 0 every node healthy, 1 otherwise, 2 bad config.")(status)
    app.command(epilog=EXIT_CODES_HELP)(rebuild)
    app.command(epilog=EXIT_CODES_HELP)(destroy)


def status(
    config: Path = ConfigOpt,
    url: Optional[str] = UrlOpt,
    username: Optional[str] = UserOpt,
    password_file: Optional[Path] = PasswordFileOpt,
    insecure: Optional[bool] = InsecureOpt,
    ca_file: Optional[Path] = CaFileOpt,
    thumbprint: Optional[str] = ThumbprintOpt,
    json_out: bool = JsonOpt,
) -> None:
    """One row per node: power, tools, IP, image, etcd member, health, leader, config drift."""
    term = Terminal(quiet=json_out)
    with reporting(term):
        from vmcoreos import cluster
        from vmcoreos.settings import load_cluster_file

        settings = load_cluster_file(config)
        conn = connection(url, username, password_file, insecure, ca_file, thumbprint, term)
        result = cluster.status(settings, conn)
        if json_out:
            term.json(result.as_dict())
        else:
            term.table(
                ["NODE", "POWER", "TOOLS", "IP", "IMAGE", "ETCD MEMBER", "HEALTH", "LEADER", "CONFIG"],
                [
                    [
                        s.name, s.power, _tools(s.tools), s.ip, s.image_version, s.member_id, s.stage,
                        "*" if s.leader else "", "drift" if s.drift else "current",
                    ]
                    for s in result.nodes
                ],
            )
        healthy = result.nodes and all(s.healthy for s in result.nodes)
        raise typer.Exit(ExitCode.OK if healthy else ExitCode.FAILED)


def _tools(value: str | None) -> str:
    return {"guestToolsRunning": "running", "guestToolsNotRunning": "not running"}.get(value or "", value or "")


def rebuild(
    config: Path = ConfigOpt,
    force: bool = typer.Option(False, "--force", help="Rebuild every node even if it runs the newest release."),
    to_version: Optional[str] = typer.Option(None, "--to-version", help="Roll to this release instead of the channel's newest."),
    ova: Optional[str] = typer.Option(None, "--ova", help="Roll to this OVA (path or URL) instead of the channel."),
    sig: Optional[str] = typer.Option(None, "--sig", help="Detached signature of --ova."),
    trusted_key: list[Path] = typer.Option([], "--trusted-key", metavar="FILE", help="Extra OpenPGP public key to trust."),
    parallel: int = typer.Option(4, "--parallel", min=1, max=32, help="Operations run at once where order allows."),
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
    """Roll the cluster onto a newer release, one node at a time, keeping etcd quorum. Safe to run from cron."""
    term = Terminal(quiet=quiet)  # --json keeps stdout for the summary; events still go to stderr
    with reporting(term):

        from vmcoreos import cluster
        from vmcoreos.settings import load_cluster_file

        settings = with_image_flags(load_cluster_file(config), term, ova=ova, sig=sig, trusted_key=trusted_key)
        conn = connection(url, username, password_file, insecure, ca_file, thumbprint, term)
        result = cluster.rebuild(
            settings, conn, reporter=term, force=force, to_version=to_version, parallel=parallel,
            adopt_template=adopt_template,
        )
        if json_out:
            term.json(result.as_dict())
        elif result.rebuilt:
            term.out.print(f"rebuilt {', '.join(result.rebuilt)} on {result.image_version}")
        elif not quiet:
            term.out.print(result.message)


def destroy(
    config: Path = ConfigOpt,
    templates: bool = typer.Option(False, "--templates", help="Also delete the cluster's imported templates."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask; required when not on a terminal."),
    url: Optional[str] = UrlOpt,
    username: Optional[str] = UserOpt,
    password_file: Optional[Path] = PasswordFileOpt,
    insecure: Optional[bool] = InsecureOpt,
    ca_file: Optional[Path] = CaFileOpt,
    thumbprint: Optional[str] = ThumbprintOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Power off and delete every VM of the cluster (and with --templates its templates). Others are never touched."""
    term = Terminal(quiet=quiet)  # --json keeps stdout for the summary; events still go to stderr
    with reporting(term):
        from vmcoreos import cluster
        from vmcoreos.settings import load_cluster_file

        settings = load_cluster_file(config)
        conn = connection(url, username, password_file, insecure, ca_file, thumbprint, term)
        with cluster.session_for(settings, conn) as session:
            plan = cluster.plan_destroy(settings, session, templates=templates)
            for name in plan.skipped:
                term.event(f"leaving {name} alone: it does not carry cluster {settings.name!r}'s mark")
            if not plan.names:
                if json_out:
                    term.json({"cluster": settings.name, "deleted": []})
                elif not quiet:
                    term.out.print(f"cluster {settings.name!r} has no VMs; nothing to delete")
                return
            if not json_out:
                term.out.print(f"will power off and delete {len(plan.names)} VMs of cluster {settings.name!r}:")
                for name in plan.names:
                    term.out.print(f"  {name}")
            if not yes:
                if not sys.stdin.isatty():
                    raise ConfigError("refusing to delete without a terminal to ask on; pass --yes to confirm")
                if not typer.confirm("delete them?", default=False):
                    raise typer.Exit(ExitCode.FAILED)
            deleted = cluster.destroy(session, plan, reporter=term)
        if json_out:
            term.json({"cluster": settings.name, "deleted": deleted})
        elif not quiet:
            term.out.print(f"deleted {len(deleted)} VMs")
