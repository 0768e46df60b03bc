"""What every command shares: options with their environment variables, error mapping."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from typing import Iterator

import typer

from vmcoreos.cli.terminal import Terminal
from vmcoreos.errors import ExitCode, VmcoreosError

EXIT_CODES_HELP = (
    "Exit codes: 0 done, 1 failed, 2 bad usage or config, 3 image verification failed, "
    "4 nodes did not join in time, 5 another run holds the lock, 130 interrupted."
)


# scheme://anything@ within one word: the user:password part of a URL, wherever a message quotes one.
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)\S*@")


def redact_urls(text: str) -> str:
    """text with the credentials of every URL in it replaced by ***."""
    return _URL_CREDENTIALS.sub(r"\1***@", text)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def reporting(term: Terminal) -> Iterator[None]:
    """Run a command body: typed errors become one line and their exit code; never a traceback."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    except VmcoreosError as exc:
        term.error(redact_urls(exc.message), exc.findings)
        raise typer.Exit(exc.exit_code)
    except KeyboardInterrupt:
        term.error("interrupted; work in progress was rolled back where it could be")
        raise typer.Exit(ExitCode.INTERRUPTED)
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if os.environ.get("VMCOREOS_DEBUG"):
            raise
        # A bug of ours, not the user's: still one line, with a way to get the details.
        # Library exceptions quote URLs as given, credentials included (requests' InvalidURL does).
        term.error(
            redact_urls(f"unexpected {type(exc).__name__}: {exc}; rerun with VMCOREOS_DEBUG=1 and report the traceback")
        )
        raise typer.Exit(ExitCode.FAILED)
    finally:
        term.finish_transfer()
        signal.signal(signal.SIGTERM, previous)


# Shared options ---------------------------------------------------------------
ConfigOpt = typer.Option(..., "--config", "-c", help="Cluster file (YAML).", dir_okay=False)
UrlOpt = typer.Option(None, "--url", help="vCenter URL. [env: VMCOREOS_URL, GOVC_URL]")
UserOpt = typer.Option(None, "--username", help="vCenter user. [env: VMCOREOS_USERNAME, GOVC_USERNAME]")
PasswordFileOpt = typer.Option(
    None, "--password-file", help="File holding the vCenter password (mode 600). [env: VMCOREOS_PASSWORD, GOVC_PASSWORD]"
)
InsecureOpt = typer.Option(
    None, "--insecure/--no-insecure", help="Skip TLS verification of vCenter (labs only; a --thumbprint pin wins over it). [env: VMCOREOS_INSECURE, GOVC_INSECURE]",
)
CaFileOpt = typer.Option(None, "--ca-file", help="PEM CA bundle that signed vCenter's certificate. [env: VMCOREOS_CA_FILE]")
ThumbprintOpt = typer.Option(None, "--thumbprint", help="Pin vCenter's certificate by SHA-1 thumbprint. [env: VMCOREOS_THUMBPRINT]")
AdoptTemplateOpt = typer.Option(
    False, "--adopt-template",
    help="Trust the cluster's existing template for this image though this host did not import it (from an older"
    " vmcoreos or another host), and record it. Check it first: its marks can be forged.",
)
JsonOpt = typer.Option(False, "--json", help="Print a machine-readable result on stdout.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print only errors and the result.")


def connection(url, username, password_file, insecure, ca_file, thumbprint, term: Terminal):
    from vmcoreos.settings import connection_from

    conn = connection_from(
        url=url, username=username, password_file=password_file, insecure=insecure, ca_file=ca_file, thumbprint=thumbprint
    )
    for notice in conn.notices:
        term.warn(notice)
    if conn.insecure:
        term.warn(f"TLS verification of {conn.host} is off (--insecure); anyone on the path can read the password")
    return conn




def image_flags(image, term: Terminal, *, trusted_key=(), insecure_skip_verify=False, allow_unsigned_version=False):
    """Image settings with --trusted-key ([DISTRO=]FILE, for the run's distro by default) and the opt-outs on top."""
    from dataclasses import replace

    from vmcoreos.settings import trusted_key as parse_key

    if trusted_key:
        image = replace(image, trusted_keys=image.trusted_keys + tuple(parse_key(k, image.distro) for k in trusted_key))
    if insecure_skip_verify:
        term.warn("signature verification is OFF (--insecure-skip-verify); you are trusting the network")
        image = replace(image, insecure_skip_verify=True)
    if allow_unsigned_version:
        image = replace(image, allow_unsigned_version=True)
    return image


def with_image_flags(settings, term: Terminal, *, ova=None, sig=None, trusted_key=(), insecure_skip_verify=False,
                     allow_unsigned_version=False):
    """The cluster file's image settings with the command line's --ova/--sig/--trusted-key on top."""
    from dataclasses import replace

    image = settings.image
    if ova is not None:
        image = replace(image, ova=ova, sig=sig)
    elif sig is not None:
        image = replace(image, sig=sig)
    image = image_flags(image, term, trusted_key=trusted_key, insecure_skip_verify=insecure_skip_verify,
                        allow_unsigned_version=allow_unsigned_version)
    return replace(settings, image=image)
