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
    EXIT_CODES_HELP, AdoptTemplateOpt, CacheDirOpt, ConfigOpt, CountOpt, DiscoveryEtcdOpt, DryRunOpt, JsonOpt,
    ParallelOpt, QuietOpt, RetriesOpt, WideOpt, exit_codes, wide, with_connection,
)
from vmcoreos.cli.tables import Column, unique_prefixes
from vmcoreos.errors import ExitCode


def register(app: typer.Typer) -> None:
    app.command(epilog=EXIT_CODES_HELP)(deploy)
    app.command(epilog=exit_codes(0, 1, 2, 6, 7, c0="every node healthy", c1="a node is missing, down or unhealthy"))(status)
    app.command(epilog=EXIT_CODES_HELP)(rebuild)
    app.command(epilog=exit_codes(0, 1, 2, 5, 130))(destroy)


def _prepared(app: App, config: Path, overrides, *, warn: bool = False):
    """The cluster file with the flags on top, checked offline, and the vCenter connection (notices shown first).

    warn: show the config's warnings (deploy does; status and rebuild run from cron on a config deploy showed).
    """
    from vmcoreos.prepare import prepare
    from vmcoreos.clusterfile import load_cluster_file

    settings = load_cluster_file(config)
    app.cluster = settings.name
    overrides.check()
    conn = app.connection()
    prepared = prepare(settings, overrides)
    if warn:
        app.warnings(prepared.warnings)
    return prepared, conn


YesOpt = typer.Option(False, "--yes", "-y",
                      help="Do not ask before removing, replacing or reconfiguring nodes; required when not on a terminal.")


def _execute(app: App, target, conn, command: str, *, plan, apply, dry_run: bool, json_out: bool, ask=None,
             lock: bool = True, changes: bool = True, **run_options):
    """Every cluster command's body: plan -> (show, or confirm) -> apply, on one Run; the result, or None
    after a dry run (which shows the plan: the same object the real run carries out)."""
    from vmcoreos.cluster.run import open_run

    with open_run(target, conn, lock=lock and not dry_run, **run_options) as run:
        planned = plan(run)
        if dry_run:
            _show_plan(app, command, run.name, planned, json_out=json_out)
            return None
        if ask is not None:
            ask(run, planned)
        if changes:
            app.applying()
        return apply(run, planned)


def _show_plan(app: App, command: str, cluster_name: str, planned, *, json_out: bool) -> None:
    """A dry run's output: each node's step with its reasons, where the count comes from, the image new nodes get."""
    steps = planned.steps()
    image = getattr(planned, "image", None)
    count = getattr(planned, "count", None)
    if json_out:
        data = {"command": command, "cluster": cluster_name, "dry_run": True, "nodes": [s.as_dict() for s in steps]}
        if count is not None:
            data["count"] = {"count": count.count, "cluster_file": count.file_count, "flag": count.flag,
                             "source": str(count)}
        if command != "destroy":
            data["image"] = image.as_dict() if image is not None else None
        app.json(data)
        return
    term = app
    term.text(f"{command} plan for cluster {cluster_name!r} (dry run: nothing was changed)")
    term.table(["NODE", "ACTION", "WHY"], [[s.node, s.action, "; ".join(s.reasons)] for s in steps])
    if count is not None:
        term.text(f"count: {count}")
    if command != "destroy":
        term.text(f"image: {_image_line(image)}")


def _image_line(image) -> str:
    if image is None:
        return "none needed (no node is created or replaced)"
    if image.version is None:
        return f"{image.distro}, version from the OVA (known once it is read; the dry run does not read it)"
    template = "to import" if image.imported else "already imported"
    return f"{image.distro} {image.version}, template {image.template} ({template})"


def _ask_deploy(app: App, yes: bool, run, planned) -> None:
    """Removing, replacing or reconfiguring running nodes asks on a terminal and needs --yes off one."""
    count = planned.count
    if count is not None and count.flag and count.count != count.file_count:
        app.note(f"count: {count}")
    changing = [s for s in planned.steps() if s.action in ("replace", "reconfigure")]
    if yes or not (planned.remove or changing):
        return
    what, why, preface = [], [], []
    if planned.remove:
        removed = ", ".join(planned.remove)
        what.append(f"remove {removed}")
        flag = count is None or count.flag
        wanted = len(planned.configs)
        why.append(f"--count {wanted} is below the cluster's size" if flag
                   else f"the cluster file's count {wanted} is below the cluster's size")
        said = f"--count {wanted}" if flag else f"count {wanted} in the cluster file"
        preface.append(f"{said} removes {removed} from cluster {run.name!r}")
    for step in changing:
        preface.append(f"{step.node}: {step.action}: {'; '.join(step.reasons)}")
    for action in ("replace", "reconfigure"):
        nodes = [s.node for s in changing if s.action == action]
        if nodes:
            what.append(f"{action} {', '.join(nodes)}")
    if changing:
        why.append("they differ from the cluster file")
    question = "; ".join(what) + (" (etcd member, then VM)?" if planned.remove and not changing else
                                  ", one node at a time, keeping etcd quorum?")
    app.confirm(question, preface=preface,
                refusal=f"deploy would {'; '.join(what)} ({'; '.join(why)}); refusing without a terminal to ask on:"
                " pass --yes to confirm, or --dry-run to see the plan")


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
    cache_dir: Optional[Path] = CacheDirOpt,
    retries: int = RetriesOpt,
    dry_run: bool = DryRunOpt,
    yes: bool = YesOpt,
    output: Optional[str] = WideOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Create the cluster's nodes (or converge to --count) and wait until each is a healthy etcd member.

    Nodes that differ from the cluster file (config, image, network, datastore, CPUs, memory) are replaced or
    reconfigured one at a time, keeping etcd quorum. Removing, replacing or reconfiguring running nodes asks on
    a terminal and needs --yes off one. A --count other than the file's is a one-off: a later run without it
    converges back to the file's count (and asks before removing).
    """
    app = App.of(ctx)
    with app.run(quiet=quiet, json_out=json_out) as term:  # --json keeps stdout for the result; events go to stderr
        from vmcoreos import prepare
        from vmcoreos.cluster import deploy
        from vmcoreos.settings import Overrides

        json_out = app.json_out
        overrides = Overrides(
            count=count, timeout=timeout, ova=ova, sig=sig, trusted_keys=tuple(str(k) for k in trusted_key),
            insecure_skip_verify=insecure_skip_verify, discovery_etcd=discovery_etcd,
        )
        prepared, conn = _prepared(app, config, overrides, warn=True)

        def apply(run, planned):
            prepare.claim_discovery(prepared, term)
            return deploy.apply(run, planned, rollback=rollback)

        result = _execute(
            app, prepared, conn, "deploy", dry_run=dry_run, json_out=json_out,
            plan=lambda run: deploy.plan(run, prepared, dry_run=dry_run), apply=apply,
            ask=lambda run, planned: _ask_deploy(app, yes, run, planned),
            reporter=term, parallel=parallel, adopt_template=adopt_template, cache_dir=cache_dir, retries=retries,
        )
        if result is None:
            return
        app.replaced = len(result.created) + len(result.removed) + len(result.rebuilt)
        if json_out:
            app.json(result.as_dict())
        else:
            _node_table(app, DEPLOY_COLUMNS, result.nodes, wide=wide(output))
            if result.removed:
                term.text(f"removed {', '.join(result.removed)}")


@with_connection
def status(ctx: typer.Context, config: Path = ConfigOpt, output: Optional[str] = WideOpt, json_out: bool = JsonOpt) -> None:
    """One row per node: power, tools, IP, image, etcd member, health, leader, config drift.

    For monitoring: exit 0 is healthy, 1 critical, 6 unknown (vCenter or etcd could not be asked),
    7 degraded placement (healthy, but members share a host or datastore although a free one exists).
    """
    app = App.of(ctx)
    with app.run(quiet=json_out, json_out=json_out) as term:
        from vmcoreos.cluster import status
        from vmcoreos.errors import EtcdError, StatusUnknownError, VSphereError
        from vmcoreos.settings import Overrides

        json_out = app.json_out
        prepared, conn = _prepared(app, config, Overrides())
        try:
            result = _execute(app, prepared, conn, "status", dry_run=False, json_out=json_out, lock=False,
                              plan=lambda run: status.plan(run, prepared), apply=status.apply)
        except (VSphereError, EtcdError) as exc:
            raise StatusUnknownError(f"status unknown: {exc.message}") from None
        state = status.verdict(result)
        if json_out:
            app.json({**result.as_dict(), "state": state})
        else:
            _node_table(app, STATUS_COLUMNS, result.nodes, wide=wide(output))
        if state == "unknown":
            term.warn("no etcd member answered though nodes are powered on; health is unknown (exit 6):"
                      " check the network path to the nodes' client port")
        if result.drs_rule in ("missing", "differs"):
            term.warn(f"DRS rule vmcoreos-{result.cluster}-etcd is {result.drs_rule} (it should hold exactly the"
                      " nodes): DRS may move members together; `vmcoreos deploy` writes it again")
        if state == "degraded":
            term.warn("etcd members share a host or datastore although a usable one is free (exit 7): a failure"
                      " there costs more than one member; `vmcoreos rebuild --force` places them apart again")
        codes = {"healthy": ExitCode.OK, "critical": ExitCode.FAILED, "degraded": ExitCode.DEGRADED}
        raise typer.Exit(codes.get(state, ExitCode.UNKNOWN))


def _tools(value: str | None) -> str:
    return {"guestToolsRunning": "running", "guestToolsNotRunning": "not running"}.get(value or "", value or "")


# The node tables: each column with its place in the drop order (0: always shown; on a narrow terminal the
# highest number is shortened or left out first; -o wide shows all). A new column picks its number here.
STATUS_COLUMNS = [
    (Column("NODE"), lambda s: s.name),
    (Column("POWER", 4), lambda s: s.power),
    (Column("TOOLS", 8), lambda s: _tools(s.tools)),
    (Column("IP", 2), lambda s: s.ip),
    (Column("IMAGE", 5), lambda s: s.image_version),
    (Column("ETCD MEMBER", 6, short=unique_prefixes), lambda s: s.member_id),
    (Column("HEALTH"), lambda s: s.stage),
    (Column("LEADER", 7), lambda s: "*" if s.leader else ""),
    (Column("DRIFT", 3), lambda s: "; ".join(s.reasons) if s.drift else "current"),
    # Where each node runs: the first to go on a narrow terminal (status warns of degraded placement anyway).
    (Column("HOST", 9), lambda s: s.host),
    (Column("DATASTORE", 10), lambda s: s.datastore),
    (Column("SHARES", 11), lambda s: s.shares),
]
DEPLOY_COLUMNS = [
    (Column("NODE"), lambda s: s.name),
    (Column("ACTION"), lambda s: s.action),
    (Column("POWER", 4), lambda s: s.power),
    (Column("IP", 2), lambda s: s.ip),
    (Column("ETCD MEMBER", 6, short=unique_prefixes), lambda s: s.member_id),
    (Column("HEALTH"), lambda s: "healthy" if s.healthy else s.stage),
]


def _node_table(app: App, columns, nodes, *, wide: bool) -> None:
    app.table([c for c, _ in columns], [[get(s) for _, get in columns] for s in nodes], wide=wide)


def _no_skip_verify(ctx: typer.Context, value: bool) -> None:
    # Without this, click suggests --insecure, which is vCenter TLS: a different trust altogether.
    if value:
        App.of(ctx).error(
            "rebuild has no --insecure-skip-verify: it runs unattended and always verifies the image"
            " (--insecure is about vCenter's TLS certificate, not images); sign the image or pass --trusted-key"
        )
        raise typer.Exit(ExitCode.USAGE)


@with_connection
def rebuild(
    ctx: typer.Context,
    config: Path = ConfigOpt,
    force: bool = typer.Option(False, "--force", help="Replace every node, even one that runs the newest release and"
                               " matches the cluster file (e.g. to give each a fresh disk)."),
    to_version: Optional[str] = typer.Option(None, "--to-version", help="Roll to this release instead of the channel's newest."),
    ova: Optional[str] = typer.Option(None, "--ova", help="Roll to this OVA (path or URL) instead of the channel."),
    sig: Optional[str] = typer.Option(None, "--sig", help="Detached signature of --ova."),
    trusted_key: list[Path] = typer.Option([], "--trusted-key", metavar="FILE", help="Extra OpenPGP public key to trust."),
    parallel: int = typer.Option(4, "--parallel", min=1, max=32, help="Operations run at once where order allows."),
    adopt_template: bool = AdoptTemplateOpt,
    cache_dir: Optional[Path] = CacheDirOpt,
    retries: int = RetriesOpt,
    dry_run: bool = DryRunOpt,
    _skip_verify: bool = typer.Option(False, "--insecure-skip-verify", hidden=True, callback=_no_skip_verify),
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Roll the cluster onto a newer release and the cluster file, one node at a time, keeping etcd quorum.

    Nodes on an older release, or differing from the cluster file (config, CPUs, memory, network, datastore),
    are replaced or reconfigured; nothing is added or removed beyond missing nodes. Safe to run from cron.
    """
    app = App.of(ctx)
    with app.run(quiet=quiet, json_out=json_out) as term:  # --json keeps stdout for the result; events go to stderr
        from vmcoreos.cluster import rebuild
        from vmcoreos.settings import Overrides

        json_out, quiet = app.json_out, app.quiet
        overrides = Overrides(version=to_version, ova=ova, sig=sig, trusted_keys=tuple(str(k) for k in trusted_key))
        prepared, conn = _prepared(app, config, overrides)
        result = _execute(
            app, prepared, conn, "rebuild", dry_run=dry_run, json_out=json_out,
            plan=lambda run: rebuild.plan(run, prepared, force=force, dry_run=dry_run),
            apply=rebuild.apply,
            reporter=term, parallel=parallel, adopt_template=adopt_template, cache_dir=cache_dir, retries=retries,
        )
        if result is None:
            return
        app.replaced = len(result.rebuilt)
        if json_out:
            app.json(result.as_dict())
        elif result.rebuilt or result.reconfigured:
            if result.rebuilt:
                term.text(f"rebuilt {', '.join(result.rebuilt)} on {result.image_version}")
            if result.reconfigured:
                term.text(f"reconfigured {', '.join(result.reconfigured)}")
        elif not quiet:
            term.text(result.message)


@with_connection
def destroy(
    ctx: typer.Context,
    config: Path = ConfigOpt,
    templates: bool = typer.Option(False, "--templates", help="Also delete the cluster's imported templates."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask; required when not on a terminal."),
    dry_run: bool = DryRunOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Power off and delete every VM of the cluster (and with --templates its templates). Others are never touched."""
    app = App.of(ctx)
    with app.run(quiet=quiet, json_out=json_out) as term:  # --json keeps stdout for the result; events go to stderr
        from vmcoreos.cluster import destroy
        from vmcoreos.clusterfile import load_cluster_file

        json_out, quiet = app.json_out, app.quiet
        settings = load_cluster_file(config)
        app.cluster = settings.name
        conn = app.connection()

        def ask(run, planned):
            for name in planned.skipped:
                term.event(f"leaving {name} alone: it does not carry cluster {settings.name!r}'s mark")
            if not planned.names:
                return
            if not json_out:
                term.text(f"will power off and delete {len(planned.names)} VMs of cluster {settings.name!r}:")
                for name in planned.names:
                    term.text(f"  {name}")
            if not yes:
                app.confirm("delete them?", refusal="refusing to delete without a terminal to ask on; pass --yes to confirm")

        result = _execute(app, settings, conn, "destroy", dry_run=dry_run, json_out=json_out, ask=ask,
                          plan=lambda run: destroy.plan(run, templates=templates), apply=destroy.apply,
                          reporter=term)
        if result is None:
            return
        deleted = result.removed
        app.replaced = len(deleted)
        if not deleted and not json_out:
            if not quiet:
                term.text(f"cluster {settings.name!r} has no VMs; nothing to delete")
            return
        if json_out:
            app.json({"cluster": settings.name, "deleted": deleted})
        elif not quiet:
            term.text(f"deleted {len(deleted)} VMs")
