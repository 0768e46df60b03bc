"""The CLI's error mapping: one line, an exit code, and no credentials from URLs in the message."""

from __future__ import annotations

import pytest
import typer

from vmcoreos.cli.common import redact_urls, reporting
from vmcoreos.cli.terminal import Terminal
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
def test_reporting_redacts_every_error(exc, capsys):
    with pytest.raises(typer.Exit):
        with reporting(Terminal()):
            raise exc
    err = capsys.readouterr().err
    assert "secret" not in err and "https://***@h/" in err and err.count("\n") == 1
