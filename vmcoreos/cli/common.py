"""What every command shares: options, declared once (environment variables from vmcoreos.environment).

The global options (-v, -q, --json, --metrics-file and the six connection
options) are accepted before the command and after it, as git, kubectl and
govc accept theirs: the root declares them, and every command gets them
added to its own (with_globals, with_connection); both land on the App.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Optional

import typer

from vmcoreos.cli.application import App
from vmcoreos.environment import (
    ENV_CA_FILE, ENV_CACHE_DIR, ENV_CONFIG, ENV_INSECURE, ENV_PASSWORD, ENV_THUMBPRINT, ENV_URL, ENV_USERNAME,
)

_EXIT_MEANINGS = {
    0: "done", 1: "failed", 2: "bad usage or config", 3: "image verification failed", 4: "nodes did not join in time",
    5: "another run holds the lock", 6: "status unknown (vCenter or etcd could not be asked)",
    7: "degraded placement (healthy, but members share a host or datastore a free one could take)", 130: "interrupted",
}


def exit_codes(*codes: int, **meanings: str) -> str:
    """A command's epilog: only the exit codes it can return; meanings as c1="..." override the usual words."""
    words = {**_EXIT_MEANINGS, **{int(k[1:]): v for k, v in meanings.items()}}
    return "Exit codes: " + ", ".join(f"{c} {words[c]}" for c in codes) + "."


# The cluster commands that change VMs can end in any of the usual ways.
EXIT_CODES_HELP = exit_codes(0, 1, 2, 3, 4, 5, 130)


# Shared options ---------------------------------------------------------------
CLUSTER_FILE = "cluster.yaml"


def cluster_file(ctx: typer.Context, value: Optional[Path]) -> Optional[Path]:
    """-c: a file, or a directory holding cluster.yaml; without -c, $VMCOREOS_CONFIG, else ./cluster.yaml."""
    if ctx.resilient_parsing:
        return value
    if value is None:
        value = Path(CLUSTER_FILE)
        if not value.is_file():
            raise typer.BadParameter(f"no cluster file: there is no ./{CLUSTER_FILE}; pass -c FILE (or a directory"
                                     f" holding {CLUSTER_FILE}), set {ENV_CONFIG}, or run where {CLUSTER_FILE} is")
    if value.is_dir():
        if not (value / CLUSTER_FILE).is_file():
            raise typer.BadParameter(f"{value} is a directory without a {CLUSTER_FILE}; pass the cluster file itself"
                                     f" (-c {value / 'NAME.yaml'}) or run `vmcoreos init {value}`")
        value = value / CLUSTER_FILE
    return value


ConfigOpt = typer.Option(
    None, "--config", "-c", envvar=ENV_CONFIG, show_envvar=True, callback=cluster_file, show_default=False,
    help=f"Cluster file (YAML), or a directory holding {CLUSTER_FILE}. [default: ./{CLUSTER_FILE}]",
)
AdoptTemplateOpt = typer.Option(
    False, "--adopt-template",
    help="Trust the cluster's existing template for this image though this host did not import it (from an older"
    " vmcoreos, another host or another user's cache), and record it in this user's cache. Check it first: its"
    " marks can be forged.",
)
JsonOpt = typer.Option(
    False, "--json", help='Print the result on stdout as JSON ("schema": 1); on failure an "error" object instead.'
)
DryRunOpt = typer.Option(False, "--dry-run", help="Print the plan (per node: create, keep, remove, replace) and change nothing.")
RetriesOpt = typer.Option(5, "--retries", min=0, max=100, help="Retries per image request after a network error or 408/429/5xx.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print only errors and the result.")
CountOpt = typer.Option(None, "--count", "-n", help="Number of nodes (overrides 'count').")
ParallelOpt = typer.Option(4, "--parallel", min=1, max=32, help="Node operations run at once.")


def _output_format(value: Optional[str]) -> Optional[str]:
    if value not in (None, "wide"):
        raise typer.BadParameter(f"{value!r} is not an output format; the one format is -o wide")
    return value


WideOpt = typer.Option(
    None, "--output", "-o", metavar="wide", callback=_output_format,
    help="wide: every column at full width even on a narrow terminal (rows may run past its edge).",
)
CacheDirOpt = typer.Option(
    None, "--cache-dir", envvar=ENV_CACHE_DIR, show_envvar=True, file_okay=False,
    help="Image cache directory (default: the user cache dir, e.g. ~/.cache/vmcoreos).",
)
DiscoveryEtcdOpt = typer.Option(
    None,
    "--discovery-etcd",
    metavar="URL",
    help="Mint a discovery token on this etcd (v2 keys API, e.g. etcd --enable-v2=true) and bootstrap with it.",
)


def wide(value: Optional[str]) -> bool:
    """-o wide given (the option's callback refused any other value)."""
    return value == "wide"


def _env_help(names) -> str:
    return f"[env var: {', '.join(names)}]"


# The six vCenter connection options, declared once. Shown with their environment variables, but
# read from the environment by connection.connection_from, whose precedence (flag, URL user:password,
# VMCOREOS_*, GOVC_*) and TLS notices need to know where a value came from.
CONNECTION_OPTIONS: list[tuple[str, object, object]] = [
    ("url", Optional[str], typer.Option(None, "--url", help="vCenter URL.", envvar=list(ENV_URL), show_envvar=True)),
    ("username", Optional[str],
     typer.Option(None, "--username", help="vCenter user.", envvar=list(ENV_USERNAME), show_envvar=True)),
    ("password_file", Optional[Path], typer.Option(
        None, "--password-file", help="File holding the vCenter password (mode 600); the variables hold the password"
        " itself.", envvar=list(ENV_PASSWORD), show_envvar=True)),
    # No envvar= here: click would refuse a value such as INSECURE=2 that connection_from reads as off.
    ("insecure", Optional[bool], typer.Option(
        None, "--insecure/--no-insecure",
        help="Skip TLS verification of vCenter (labs only; a --thumbprint pin wins over it). " + _env_help(ENV_INSECURE),
    )),
    ("ca_file", Optional[Path], typer.Option(
        None, "--ca-file", help="PEM CA bundle that signed vCenter's certificate.", envvar=list(ENV_CA_FILE),
        show_envvar=True)),
    ("thumbprint", Optional[str], typer.Option(
        None, "--thumbprint", help="Pin vCenter's certificate by SHA-1 or SHA-256 thumbprint (`vmcoreos thumbprint URL`"
        " prints it).", envvar=list(ENV_THUMBPRINT), show_envvar=True)),
]
CONNECTION_NAMES = [name for name, _, _ in CONNECTION_OPTIONS]

# The options every command takes, after the command or before it (on the root).
GLOBAL_OPTIONS: list[tuple[str, object, object]] = [
    ("verbose", bool, typer.Option(
        False, "--verbose", "-v",
        help="Log each SOAP call and HTTP request (method and host; never bodies or credentials) on stderr.")),
    ("quiet", bool, QuietOpt),
    ("metrics_file", Optional[Path], typer.Option(
        None, "--metrics-file", metavar="PATH", dir_okay=False,
        help="Record this run (time, duration, exit code, nodes replaced) in PATH, a node_exporter textfile"
        " (*.prom), per command and cluster.")),
]
GLOBAL_NAMES = [name for name, _, _ in GLOBAL_OPTIONS]


def given(ctx: typer.Context, name: str, value):
    """value if it was typed on the command line, else None (defaults; environment values are
    left to connection_from, which knows their precedence)."""
    source = ctx.get_parameter_source(name)
    return value if getattr(source, "name", "") in ("COMMANDLINE", "PROMPT") else None


def root_options(ctx: typer.Context, values: dict) -> None:
    """What the root (the options before the command) was given, kept on the App for the command."""
    app = App.of(ctx)
    app.root_flags = {"json_out": bool(values.get("json_out")), "quiet": bool(values.get("quiet"))}
    app.connection_options = {name: given(ctx, name, values.get(name)) for name in CONNECTION_NAMES}
    app.metrics_file = values.get("metrics_file")
    if values.get("verbose"):
        _verbose()


def _verbose() -> None:
    from vmcoreos.cli import verbose as verbose_log

    verbose_log.enable()


def add_options(fn, added: list[tuple[str, object, object]], take, *, before: tuple[str, ...] = ()):
    """fn with the `added` options in its signature (before the first parameter named in `before`, else
    last); take(ctx, values) receives their values, and fn the rest."""
    signature = inspect.signature(fn, eval_str=True)
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()]
    assert params and params[0].name == "ctx", f"{fn.__name__} takes ctx: typer.Context first"
    have = {p.name for p in params}
    added = [a for a in added if a[0] not in have]
    names = [name for name, _, _ in added]
    at = next((i for i, p in enumerate(params) if p.name in before), len(params))
    new = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o, annotation=t) for n, t, o in added]

    @functools.wraps(fn)
    def command(**kwargs):
        take(kwargs["ctx"], {name: kwargs.pop(name) for name in names})
        return fn(**kwargs)

    command.__signature__ = signature.replace(parameters=params[:at] + new + params[at:])
    command.__annotations__ = {**{p.name: p.annotation for p in params}, **{n: t for n, t, _ in added}}
    del command.__wrapped__  # typer must read the signature above, not fn's
    return command


def with_connection(fn):
    """Add the connection options to a command, before --json/--quiet; typed here or before the command,
    their values go to the App (the command's win)."""

    def take(ctx: typer.Context, values: dict) -> None:
        app = App.of(ctx)
        before = app.connection_options
        app.connection_options = {
            name: v if (v := given(ctx, name, values[name])) is not None else before.get(name)
            for name in CONNECTION_NAMES
        }

    return add_options(fn, CONNECTION_OPTIONS, take, before=("json_out", "quiet"))


def with_globals(fn):
    """Add -v, -q and --metrics-file to a command (those it does not declare itself), merged with the root's."""

    def take(ctx: typer.Context, values: dict) -> None:
        app = App.of(ctx)
        if values.get("verbose"):
            _verbose()
        if values.get("quiet"):
            app.root_flags["quiet"] = True
        if values.get("metrics_file") is not None:
            app.metrics_file = values["metrics_file"]

    return add_options(fn, GLOBAL_OPTIONS, take)
