"""Tables keep every value whole: a narrow terminal shortens or drops columns by their priority, never wraps."""

from __future__ import annotations

import os
import sys

import pytest

from tests.harness.onterminal import run_on_a_terminal
from vmcoreos.cli.tables import Column, layout, unique_prefixes

MEMBERS = ["8e9e05c52164694d", "91bc3c398fb3c146", "8e9e05c5aaaa1111"]
# The status table of three nodes as `vmcoreos status` prints it (its own columns, cli/cluster.py), on a terminal
# 80 columns wide, then -o wide, then as if the terminal were 30 and 12 columns wide: one process, four tables.
SCRIPT = """
import os
from vmcoreos.cli.application import App
from vmcoreos.cli.cluster import STATUS_COLUMNS, _node_table
from vmcoreos.cluster.results import NodeStatus

members = {members!r}
nodes = [NodeStatus(name=f"lab-0{{i + 1}}", power="poweredOn", tools="guestToolsRunning", ip=f"127.0.60.{{21 + i}}",
                    image_version="4593.2.5", member_id=members[i], healthy=True, leader=i == 0, stage="healthy",
                    drift=i == 2) for i in range(3)]
for columns, wide in (("80", False), ("80", True), ("30", False), ("12", False)):
    os.environ["COLUMNS"] = columns
    _node_table(App(), STATUS_COLUMNS, nodes, wide=wide)
    print("---", flush=True)
"""


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[tuple[int, bool], list[str]]:
    script = tmp_path_factory.mktemp("tables") / "table.py"
    script.write_text(SCRIPT.format(members=MEMBERS))
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    code, shown = run_on_a_terminal([sys.executable, str(script)], env, columns=80)
    assert code == 0, shown
    parts = [part.strip("\n").splitlines() for part in shown.split("---\n")[:4]]
    return dict(zip([(80, False), (80, True), (30, False), (12, False)], parts))


def test_status_at_80_columns_on_a_terminal_splits_no_value(tables):
    # It printed `poweredO`/`n`, `127.0.60`/`.21` and member ids over two lines.
    lines = tables[80, False]
    assert len(lines) == 4, lines
    assert max(len(line) for line in lines) <= 80
    header = lines[0].split()
    assert header[:2] == ["NODE", "POWER"] and "HEALTH" in header and "IP" in header
    for i, line in enumerate(lines[1:]):
        cells = line.split()
        assert cells[0] == f"lab-0{i + 1}" and f"127.0.60.{21 + i}" in cells and "healthy" in cells
        assert "poweredOn" in cells
    # Member ids were shortened to unique prefixes first, then the least important column (TOOLS, drop 8) left.
    assert "TOOLS" not in header and "LEADER" in header
    assert [line.split()[4] for line in lines[1:]] == ["8e9e05c52", "91bc3c39", "8e9e05c5a"]


def test_o_wide_shows_every_column_whole(tables):
    lines = tables[80, True]
    assert len(lines) == 4
    assert lines[0].split() == ["NODE", "POWER", "TOOLS", "IP", "IMAGE", "ETCD", "MEMBER", "HEALTH", "LEADER", "CONFIG",
                                "HOST", "DATASTORE", "SHARES"]
    for line, member in zip(lines[1:], MEMBERS):
        assert member in line.split()


def test_a_very_narrow_terminal_keeps_the_essential_columns_and_runs_past_the_edge(tables):
    assert tables[30, False][0].split() == ["NODE", "IP", "HEALTH"]
    lines = tables[12, False]
    assert len(lines) == 4  # one row per node, even past the edge
    assert lines[0].split() == ["NODE", "HEALTH"]
    assert lines[1].split() == ["lab-01", "healthy"]


def test_piped_output_is_full_width_whatever_columns_says(capfd, monkeypatch):
    from vmcoreos.cli.application import App

    monkeypatch.setenv("COLUMNS", "20")
    App().table([Column("NODE"), Column("ETCD MEMBER", 9, short=unique_prefixes)], [["lab-01", MEMBERS[0]]])
    assert capfd.readouterr().out.splitlines() == ["NODE    ETCD MEMBER", f"lab-01  {MEMBERS[0]}"]


@pytest.mark.parametrize("width, header", [
    (None, "A  BB  CCCCCCCCCC  DD"),
    (21, "A  BB  CCCCCCCCCC  DD"),
    (20, "A  BB  DD"),  # CCCCCCCCCC (drop 3) goes first
    (8, "A  DD"),  # then BB (drop 2)
    (4, "A"),  # then DD (drop 1)
    (1, "A"),  # drop 0 stays even when it does not fit
])
def test_layout_drops_the_highest_number_first(width, header):
    columns = [Column("A"), Column("BB", 2), Column("CCCCCCCCCC", 3), Column("DD", 1)]
    assert layout(columns, [["a", "b", "c", "d"]], width)[0] == header


def test_a_column_with_a_short_form_is_shortened_before_any_column_is_dropped():
    columns = [Column("NODE"), Column("MEMBER", 5, short=unique_prefixes), Column("X", 1)]
    rows = [["lab-01", MEMBERS[0], "x"], ["lab-02", MEMBERS[2], "y"]]
    lines = layout(columns, rows, 24)
    assert lines[1].split() == ["lab-01", "8e9e05c52", "x"] and lines[2].split() == ["lab-02", "8e9e05c5a", "y"]


def test_unique_prefixes_keep_ids_apart_and_leave_blanks():
    assert unique_prefixes([MEMBERS[0], MEMBERS[1], "", MEMBERS[2]]) == ["8e9e05c52", "91bc3c39", "", "8e9e05c5a"]
    assert unique_prefixes(["abc"]) == ["abc"]
