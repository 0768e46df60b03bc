"""What every command shares: options (declared once, environment variables from vmcoreos.environment), error mapping."""

from __future__ import annotations

import contextlib
import functools
import inspect
import signal
from pathlib import Path
from typing import Iterator, Optional

import typer

from vmcoreos import environment
from vmcoreos.cli.terminal import Terminal
from vmcoreos.errors import ExitCode, VmcoreosError
from vmcoreos.environment import (
    ENV_CA_FILE, ENV_CACHE_DIR, ENV_DEBUG, ENV_INSECURE, ENV_PASSWORD, ENV_THUMBPRINT, ENV_URL, ENV_USERNAME,
)

_EXIT_MEANINGS = {
    0: "done", 1: "failed", 2: "bad usage or config", 3: "image verification failed", 4: "nodes did not join in time",
    5: "another run holds the lock", 6: "status unknown (vCenter or etcd could not be asked)", 130: "interrupted",
}


def exit_codes(*codes: int, **meanings: str) -> str:
    """A command's epilog: only the exit codes it can return; meanings as c1="..." override the usual words."""
    words = {**_EXIT_MEANINGS, **{int(k[1:]): v for k, v in meanings.items()}}
    return "Exit codes: " + ", ".join(f"{c} {words[c]}" for c in codes) + "."


# The cluster commands that change VMs can end in any of the usual ways.
EXIT_CODES_HELP = exit_codes(0, 1, 2, 3, 4, 5, 130)


def redact_urls(text: str) -> str:
    """text with the credentials of every URL in it replaced by *** (the package's one scrubber, vmcoreos.text)."""
    from vmcoreos.text import redact

    return redact(text, "***")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def reporting(term: Terminal) -> Iterator[None]:
    """Run a command body: typed errors become one line and their exit code; never a traceback."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    except VmcoreosError as exc:
        term.failure(redact_urls(exc.message), exc.exit_code, exc.findings)
        raise typer.Exit(exc.exit_code)
    except KeyboardInterrupt:
        term.failure("interrupted; work in progress was rolled back where it could be", ExitCode.INTERRUPTED)
        raise typer.Exit(ExitCode.INTERRUPTED)
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if environment.debug():
            raise
        # A bug of ours, not the user's: still one line, with a way to get the details.
        # Library exceptions quote URLs as given, credentials included (requests' InvalidURL does).
        term.failure(
            redact_urls(f"unexpected {type(exc).__name__}: {exc}; rerun with {ENV_DEBUG}=1 and report the traceback"),
            ExitCode.FAILED,
        )
        raise typer.Exit(ExitCode.FAILED)
    finally:
        term.finish_transfer()
        signal.signal(signal.SIGTERM, previous)


# Shared options ---------------------------------------------------------------
ConfigOpt = typer.Option(..., "--config", "-c", help="Cluster file (YAML).", dir_okay=False)
AdoptTemplateOpt = typer.Option(
    False, "--adopt-template",
    help="Trust the cluster's existing template for this image though this host did not import it (from an older"
    " vmcoreos or another host), and record it. Check it first: its marks can be forged.",
)
JsonOpt = typer.Option(
    False, "--json", help='Print the result on stdout as JSON ("schema": 1); on failure an "error" object instead.'
)
DryRunOpt = typer.Option(False, "--dry-run", help="Print the plan (per node: create, keep, remove, replace) and change nothing.")
RetriesOpt = typer.Option(5, "--retries", min=0, max=100, help="Retries per image request after a network error or 408/429/5xx.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print only errors and the result.")
CountOpt = typer.Option(None, "--count", "-n", help="Number of nodes (overrides 'count').")
ParallelOpt = typer.Option(4, "--parallel", min=1, max=32, help="Node operations run at once.")
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
        None, "--thumbprint", help="Pin vCenter's certificate by SHA-1 thumbprint.", envvar=list(ENV_THUMBPRINT),
        show_envvar=True)),
]


def with_connection(fn):
    """Add the connection options to a command, before --json/--quiet; their values go to the App."""
    names = [name for name, _, _ in CONNECTION_OPTIONS]
    signature = inspect.signature(fn, eval_str=True)
    params = list(signature.parameters.values())
    at = next((i for i, p in enumerate(params) if p.name in ("json_out", "quiet")), len(params))
    added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o, annotation=t) for n, t, o in CONNECTION_OPTIONS]
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]
    assert params and params[0].name == "ctx", "a command with connection options takes ctx: typer.Context first"

    @functools.wraps(fn)
    def command(**kwargs):
        from vmcoreos.cli.application import App

        ctx: typer.Context = kwargs["ctx"]
        given = {}
        for name in names:
            value = kwargs.pop(name)
            # Environment values are left to connection_from, which knows their precedence.
            source = ctx.get_parameter_source(name)
            given[name] = None if getattr(source, "name", "") == "ENVIRONMENT" else value
        App.of(ctx).connection_options = given
        return fn(**kwargs)

    command.__signature__ = signature.replace(parameters=params[:at] + added + params[at:])
    command.__annotations__ = {**{p.name: p.annotation for p in params}, **{n: t for n, t, _ in CONNECTION_OPTIONS}}
    del command.__wrapped__  # typer must read the signature above, not fn's
    return command
