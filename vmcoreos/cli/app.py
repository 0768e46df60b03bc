"""The typer app: parses, prints, and maps errors to exit codes. No vSphere work here."""

from __future__ import annotations

import contextlib
import signal
import sys
from pathlib import Path
from typing import Iterator, Optional

import typer

from vmcoreos.cli.terminal import Terminal
from vmcoreos.errors import ExitCode, Interrupted, VmcoreosError

app = typer.Typer(
    name="vmcoreos",
    help="Stand up and maintain CoreOS-family (Flatcar, CoreOS, Fedora CoreOS) clusters on VMware vSphere.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

EXIT_CODES_HELP = (
    "Exit codes: 0 done, 1 failed, 2 bad usage or config, 3 image verification failed, "
    "4 nodes did not join in time, 5 another run holds the lock, 130 interrupted."
)


@app.callback()
def _root() -> None:
    """Stand up and maintain CoreOS-family clusters on VMware vSphere."""


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def reporting(term: Terminal) -> Iterator[None]:
    """Run a command body: typed errors become one line and their exit code; never a traceback."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    except VmcoreosError as exc:
        term.error(exc.message, exc.findings)
        raise typer.Exit(exc.exit_code)
    except KeyboardInterrupt:
        term.error("interrupted; work in progress was rolled back where it could be")
        raise typer.Exit(ExitCode.INTERRUPTED)
    finally:
        term.finish_transfer()
        signal.signal(signal.SIGTERM, previous)


# Shared options ---------------------------------------------------------------
ConfigOpt = typer.Option(..., "--config", "-c", help="Cluster file (YAML).", exists=False, dir_okay=False)
UrlOpt = typer.Option(None, "--url", help="vCenter URL. [env: VMCOREOS_URL, GOVC_URL]")
UserOpt = typer.Option(None, "--username", help="vCenter user. [env: VMCOREOS_USERNAME, GOVC_USERNAME]")
PasswordFileOpt = typer.Option(
    None, "--password-file", help="File holding the vCenter password (mode 600). [env: VMCOREOS_PASSWORD, GOVC_PASSWORD]"
)
InsecureOpt = typer.Option(
    None, "--insecure/--no-insecure", help="Skip TLS verification of vCenter (labs only). [env: VMCOREOS_INSECURE, GOVC_INSECURE]"
)
CaFileOpt = typer.Option(None, "--ca-file", help="PEM CA bundle that signed vCenter's certificate. [env: VMCOREOS_CA_FILE]")
ThumbprintOpt = typer.Option(None, "--thumbprint", help="Pin vCenter's certificate by SHA-1 thumbprint. [env: VMCOREOS_THUMBPRINT]")
JsonOpt = typer.Option(False, "--json", help="Print a machine-readable result on stdout.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print only errors and the result.")


def connection(url, username, password_file, insecure, ca_file, thumbprint, term: Terminal):
    from vmcoreos.settings import connection_from

    conn = connection_from(
        url=url, username=username, password_file=password_file, insecure=insecure, ca_file=ca_file, thumbprint=thumbprint
    )
    if conn.insecure:
        term.warn(f"TLS verification of {conn.host} is off (--insecure); anyone on the path can read the password")
    return conn


@app.command(epilog=EXIT_CODES_HELP)
def deploy(
    config: Path = ConfigOpt,
    count: Optional[int] = typer.Option(None, "--count", "-n", help="Number of nodes (overrides 'count')."),
    ova: Optional[str] = typer.Option(None, "--ova", help="OVA path or URL (overrides image.ova)."),
    sig: Optional[str] = typer.Option(None, "--sig", help="Detached signature of the OVA, path or URL (default: OVA + .sig)."),
    trusted_key: list[Path] = typer.Option([], "--trusted-key", metavar="FILE", help="Extra OpenPGP public key to trust (repeatable)."),
    insecure_skip_verify: bool = typer.Option(False, "--insecure-skip-verify", help="Do not verify the image signature (dangerous)."),
    parallel: int = typer.Option(4, "--parallel", min=1, max=32, help="Node operations run at once."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Seconds to wait for nodes to join (overrides wait.timeout)."),
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
    term = Terminal(quiet=quiet or json_out)
    with reporting(term):
        from dataclasses import replace

        from vmcoreos import cluster
        from vmcoreos.settings import load_cluster_file

        settings = load_cluster_file(config)
        image = settings.image
        if ova is not None:
            image = replace(image, ova=ova, sig=sig)
        elif sig is not None:
            image = replace(image, sig=sig)
        if trusted_key:
            image = replace(image, trusted_keys=image.trusted_keys + tuple(trusted_key))
        if insecure_skip_verify:
            term.warn("image signature verification is OFF (--insecure-skip-verify); you are trusting the network")
            image = replace(image, insecure_skip_verify=True)
        settings = replace(settings, image=image)
        if timeout is not None:
            settings = replace(settings, wait_timeout=timeout)
        n = count if count is not None else settings.count
        if n < 1:
            raise typer.BadParameter("--count must be at least 1")
        conn = connection(url, username, password_file, insecure, ca_file, thumbprint, term)
        result = cluster.deploy(settings, conn, count=n, reporter=term, parallel=parallel)
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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("vmcoreos: error: interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)


if __name__ == "__main__":
    main()
