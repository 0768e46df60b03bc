"""Names vCenter gives hosts and datastores are data: shown without escape sequences, tables without markup."""

from __future__ import annotations

import io

from rich.console import Console

from vmcoreos.cli.terminal import Terminal
from vmcoreos.vsphere.topology import shown


def test_a_hostile_host_name_loses_its_control_characters():
    assert shown("esx-01\x1b[2J\x07\n") == "esx-01?[2J??"
    assert shown("x" * 500) == "x" * 120
    assert shown("esx-01.example.com") == "esx-01.example.com"


def test_a_terminal_table_shows_markup_in_a_cell_as_text(capsys):
    term = Terminal()
    term.out = Console(file=io.StringIO(), force_terminal=True, color_system=None, width=200)
    term.table(["NODE", "HOST"], [["lab-01", "[bold red]esx-evil[/] [link=http://x]y[/link]"]])
    assert "[bold red]esx-evil[/] [link=http://x]y[/link]" in capsys.readouterr().out
