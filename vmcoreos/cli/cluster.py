"""vmcoreos deploy, status, rebuild and destroy: the commands that act on a cluster's VMs.

Each is prepare -> plan -> (show or confirm) -> apply, on the plan object
the core returned; the commands only choose what to print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vmcoreos.cli.application import App
from vmcoreos.cli.common import (
    EXIT_CODES_HELP, AdoptTemplateOpt, ConfigOpt, CountOpt, DiscoveryEtcdOpt, JsonOpt, ParallelOpt, QuietOpt,
    with_connection,
)
from vmcoreos.errors import ExitCode


def register(app: typer.Typer) -> None:
    app.command(epilog=EXIT_CODES_HELP)(deploy)
    app.command(epilog="Exit codes: 0 every node healthy, 1 otherwise, 2 bad config.")(status)
    app.command(epilog=EXIT_CODES_HELP)(rebuild)
    app.command(epilog=EXIT_CODES_HELP)(destroy)


def _prepared(app: App, config: Path, overrides, *, warn: bool = False):
    """The cluster file with the flags on top, checked offline, and the vCenter connection (notices shown first).

    warn: show the config's warnings (deploy does; status and rebuild run from cron on a config deploy showed).
    """
    from vmcoreos import cluster
    from vmcoreos.settings import load_cluster_file

    settings = load_cluster_file(config)
    overrides.check()
    conn = app.connection()
    prepared = cluster.prepare(settings, overrides)
    if warn:
        app.warnings(prepared.warnings)
    return prepared, conn


@with_connection
def deploy(
    ctx: typer.Context,
    config: Path = ConfigOpt,
    count: Optional[int] = CountOpt,
    ova: Optional[str] = typer.Option(None, "--ova", help="OVA path or URL (overrides image.ova)."),
    sig: Optional[str] = typer.Option(None, "--sig", help="Detached signature of the OVA, path or URL (default: OVA + .sig)."),
    trusted_key: list[Path] = typer.Option([], "--trusted-key", metavar="FILE", help="Extra OpenPGP public key to trust (repeatable)."),
    insecure_skip_verify: bool = typer.Option(False, "--insecure-skip-verify", help="Do not verify the image signature (dangerous)."),
    parallel: int = ParallelOpt,
    rollback: bool = typer.Option(
        False, "--rollback", help="On failure, remove the nodes this run created (default: keep them for inspection)."
    ),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds to wait for nodes to join (overrides wait.timeout)."),
    discovery_etcd: Optional[str] = DiscoveryEtcdOpt,
    adopt_template: bool = AdoptTemplateOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Create the cluster's nodes (or converge to --count) and wait until each is a healthy etcd member."""
    app = App.of(ctx)
    with app.run(quiet=quiet) as term:  # --json keeps stdout for the summary; events still go to stderr
        from vmcoreos import cluster
        from vmcoreos.settings import Overrides

        overrides = Overrides(
            count=count, timeout=timeout, ova=ova, sig=sig, trusted_keys=tuple(str(k) for k in trusted_key),
            insecure_skip_verify=insecure_skip_verify, discovery_etcd=discovery_etcd,
        )
        prepared, conn = _prepared(app, config, overrides, warn=True)
        cluster.claim_discovery(prepared, term)
        with cluster.open_run(prepared, conn, reporter=term, parallel=parallel, adopt_template=adopt_template) as run:
            plan = cluster.deploy.plan(run, prepared)
            result = cluster.deploy.apply(run, plan, rollback=rollback)
        if json_out:
            app.json(result.as_dict())
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


@with_connection
def status(ctx: typer.Context, config: Path = ConfigOpt, json_out: bool = JsonOpt) -> None:
    """One row per node: power, tools, IP, image, etcd member, health, leader, config drift."""
    app = App.of(ctx)
    with app.run(quiet=json_out) as term:
        from vmcoreos import cluster
        from vmcoreos.settings import Overrides

        prepared, conn = _prepared(app, config, Overrides())
        with cluster.open_run(prepared, conn, lock=False) as run:
            result = cluster.status.apply(run, prepared)
        if json_out:
            app.json(result.as_dict())
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


@with_connection
def rebuild(
    ctx: typer.Context,
    config: Path = ConfigOpt,
    force: bool = typer.Option(False, "--force", help="Rebuild every node even if it runs the newest release."),
    to_version: Optional[str] = typer.Option(None, "--to-version", help="Roll to this release instead of the channel's newest."),
    ova: Optional[str] = typer.Option(None, "--ova", help="Roll to this OVA (path or URL) instead of the channel."),
    sig: Optional[str] = typer.Option(None, "--sig", help="Detached signature of --ova."),
    trusted_key: list[Path] = typer.Option([], "--trusted-key", metavar="FILE", help="Extra OpenPGP public key to trust."),
    parallel: int = typer.Option(4, "--parallel", min=1, max=32, help="Operations run at once where order allows."),
    adopt_template: bool = AdoptTemplateOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Roll the cluster onto a newer release, one node at a time, keeping etcd quorum. Safe to run from cron."""
    app = App.of(ctx)
    with app.run(quiet=quiet) as term:  # --json keeps stdout for the summary; events still go to stderr
        from vmcoreos import cluster
        from vmcoreos.settings import Overrides

        overrides = Overrides(version=to_version, ova=ova, sig=sig, trusted_keys=tuple(str(k) for k in trusted_key))
        prepared, conn = _prepared(app, config, overrides)
        with cluster.open_run(prepared, conn, reporter=term, parallel=parallel, adopt_template=adopt_template) as run:
            plan, image = cluster.rebuild.plan(run, prepared, force=force)
            result = cluster.rebuild.apply(run, plan, image)
        if json_out:
            app.json(result.as_dict())
        elif result.rebuilt:
            term.out.print(f"rebuilt {', '.join(result.rebuilt)} on {result.image_version}")
        elif not quiet:
            term.out.print(result.message)


@with_connection
def destroy(
    ctx: typer.Context,
    config: Path = ConfigOpt,
    templates: bool = typer.Option(False, "--templates", help="Also delete the cluster's imported templates."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask; required when not on a terminal."),
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Power off and delete every VM of the cluster (and with --templates its templates). Others are never touched."""
    app = App.of(ctx)
    with app.run(quiet=quiet) as term:  # --json keeps stdout for the summary; events still go to stderr
        from vmcoreos import cluster
        from vmcoreos.settings import load_cluster_file

        settings = load_cluster_file(config)
        conn = app.connection()
        with cluster.session_for(settings, conn) as session:
            plan = cluster.destroy.plan(settings, session, templates=templates)
            for name in plan.skipped:
                term.event(f"leaving {name} alone: it does not carry cluster {settings.name!r}'s mark")
            if not plan.names:
                if json_out:
                    app.json({"cluster": settings.name, "deleted": []})
                elif not quiet:
                    term.out.print(f"cluster {settings.name!r} has no VMs; nothing to delete")
                return
            if not json_out:
                term.out.print(f"will power off and delete {len(plan.names)} VMs of cluster {settings.name!r}:")
                for name in plan.names:
                    term.out.print(f"  {name}")
            if not yes:
                app.confirm("delete them?", refusal="refusing to delete without a terminal to ask on; pass --yes to confirm")
            deleted = cluster.destroy.apply(session, plan, reporter=term)
        if json_out:
            app.json({"cluster": settings.name, "deleted": deleted})
        elif not quiet:
            term.out.print(f"deleted {len(deleted)} VMs")
