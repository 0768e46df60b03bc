"""The CLI's error mapping: one line, an exit code, and no credentials from URLs in the message."""

from __future__ import annotations

import pytest
import typer

from tests.harness.runner import invoke_vmcoreos
from vmcoreos.cli.application import App, redact_urls
from vmcoreos.errors import DownloadError


@pytest.mark.parametrize(
    "text,shown",
    [
        ("Failed to parse: https://user:secret@h:99999/x", "Failed to parse: https://***@h:99999/x"),
        ("'http://u:p%40ss@h/a' and ftp://only-user@h/b", "'http://***@h/a' and ftp://***@h/b"),
        ("https://u:pa/ss@h/v", "https://***@h/v"),
        ("https://h/path and mail@example.com", "https://h/path and mail@example.com"),
    ],
)
def test_redact_urls(text, shown):
    assert redact_urls(text) == shown


@pytest.mark.parametrize("exc", [ValueError("bad https://user:secret@h/x"), DownloadError("at https://user:secret@h/")])
def test_a_run_redacts_every_error(exc, capsys):
    with pytest.raises(typer.Exit):
        with App().run():
            raise exc
    err = capsys.readouterr().err
    assert "secret" not in err and "https://***@h/" in err and err.count("\n") == 1


@pytest.mark.parametrize("args, words", [
    (["deploy", "--count", "zero"], "Invalid value for '--count'"),
    (["deploy", "--no-such-flag"], "No such option: --no-such-flag"),
    (["dploy"], "No such command 'dploy'"),
])
def test_a_usage_error_is_one_line_that_says_where_help_is(args, words):
    run = invoke_vmcoreos(args)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("vmcoreos: error: "), run.stderr
    assert words in run.stderr and "--help'" in run.stderr


def test_no_command_still_shows_the_help():
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "vmcoreos"], capture_output=True, text=True, timeout=60)
    assert "Commands" in run.stdout + run.stderr and "deploy" in run.stdout + run.stderr
