"""The typer app: parses, prints, and maps errors to exit codes. No vSphere work here.

Commands are grouped by what they act on (cluster: deploy/status/rebuild/destroy;
images: fetch/images; configs: render/encode/convert/init) and register
themselves; command bodies import the core lazily so `--help` stays fast.
The App in typer's context (cli/application.py) is each run's terminal, and
owns its prompts and connection options.
"""

from __future__ import annotations

import contextlib
import sys

import typer

from vmcoreos.cli import cluster, common, configs, images, vcenter
from vmcoreos.cli.application import App
from vmcoreos.errors import ExitCode

app = typer.Typer(
    name="vmcoreos",
    help="Stand up and maintain CoreOS-family (Flatcar, CoreOS, Fedora CoreOS) clusters on VMware vSphere.",
    no_args_is_help=True,
    add_completion=True,
    epilog="-v, -q, --json, --metrics-file and the connection options also work after the command (vmcoreos status"
    " -v). VMCOREOS_DEBUG=1 shows the traceback"
    " of an unexpected error (a bug to report) instead of its one line.",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"vmcoreos {version('vmcoreos')}")
        raise typer.Exit(ExitCode.OK)


def _root(
    ctx: typer.Context,
    _show_version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print vmcoreos's version and exit."
    ),
) -> None:
    """Stand up and maintain CoreOS-family clusters on VMware vSphere.

    -v, -q, --json, --metrics-file and the connection options work before the command or after it.
    """
    App.of(ctx)


# The global options, typed before the command; each command takes them after itself too (cli/common.py).
app.callback()(common.add_options(
    _root, [*common.GLOBAL_OPTIONS, ("json_out", bool, common.JsonOpt), *common.CONNECTION_OPTIONS], common.root_options,
))


for module in (cluster, images, configs, vcenter):
    module.register(app)
for info in app.registered_commands:
    info.callback = common.with_globals(info.callback)


PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def forbid_core_dumps() -> None:
    """The vCenter password and the node configs' private keys sit in this process's memory for the whole run.

    No core file may carry them to disk, and with PR_SET_DUMPABLE off no other
    process of the same user may attach to this one or read its memory or
    environment through /proc. Best effort: a platform without either keeps running.
    """
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def one_line_usage_errors() -> None:
    """A bad flag or value gets one line, like every other refusal, instead of click's usage, hint and error.

    Set by main() only, the process's entry point: a script reading stderr sees one line per problem.
    `vmcoreos` alone still shows the help (NoArgsIsHelpError shows itself).
    """
    from typer._click.exceptions import UsageError

    def show(self, file=None) -> None:
        command = self.ctx.command_path if self.ctx is not None else "vmcoreos"
        message = " ".join(self.format_message().split()).rstrip(".")
        joint = " " if message.endswith("?") else "; "  # "Did you mean 'deploy'? see …"
        print(f"vmcoreos: error: {message}{joint}see '{command} --help'", file=file or sys.stderr)

    UsageError.show = show


def main() -> None:
    forbid_core_dumps()
    one_line_usage_errors()
    try:
        app()
    except KeyboardInterrupt:
        print("vmcoreos: error: interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)


if __name__ == "__main__":
    main()
