"""Live per-node progress: in place on a terminal, a line per stage change piped, never silent for long."""

from __future__ import annotations

import io
import time

from rich.console import Console

from vmcoreos.cli import progress
from vmcoreos.cli.progress import NodeProgress
from vmcoreos.reporting import QuietReporter, stage


def test_piped_one_line_per_stage_change_and_a_heartbeat_while_a_node_waits(monkeypatch):
    monkeypatch.setattr(progress, "HEARTBEAT", 0.3)
    lines: list[str] = []
    shown = NodeProgress(Console(file=io.StringIO()), interactive=False, emit=lines.append)
    shown.stage("lab-01", "cloned")
    shown.stage("lab-01", "cloned")  # no change: no line
    shown.stage("lab-02", "powered on")
    shown.stage("lab-01", "healthy")
    shown.stage("lab-01", "has IP")  # the run's last wait over every node: a healthy node is no news
    assert lines == ["lab-01: cloned", "lab-02: powered on", "lab-01: healthy"]
    shown.stage("lab-01", "etcd member remove")  # a change is
    assert lines[-1] == "lab-01: etcd member remove"
    shown.stage("lab-01", "healthy")
    deadline = time.monotonic() + 5
    while len(lines) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    shown.stop()
    # lab-02 is still on its way, so it is named; lab-01 is done and is not.
    assert lines[5].startswith("waiting: lab-02 powered on for ") and "lab-01" not in lines[5]


def test_on_a_terminal_one_row_per_node_with_its_stage_and_elapsed_time():
    out = io.StringIO()
    shown = NodeProgress(Console(file=out, force_terminal=True, width=80), interactive=True, emit=lambda line: None)
    shown.stage("lab-01", "tools running")
    shown.stage("lab-02", "has IP")
    shown.stage("lab-01", "healthy")
    rows = shown.rows()
    shown.stop()
    assert [(n, s) for n, s, _ in rows] == [("lab-01", "healthy"), ("lab-02", "has IP")]
    assert all(0 <= elapsed < 5 for _, _, elapsed in rows)
    text = out.getvalue()
    assert "lab-02" in text and "has IP" in text


def test_a_reporter_without_stages_gets_an_event_line():
    events: list[str] = []

    class Old:
        def event(self, message):
            events.append(message)

    stage(Old(), "lab-01", "cloned")
    stage(QuietReporter(), "lab-01", "cloned")
    assert events == ["lab-01: cloned"]


def test_a_hostile_name_is_shown_as_text_never_as_markup():
    shown = NodeProgress(Console(file=io.StringIO()), interactive=False, emit=lambda line: None)
    shown.stage("[red]lab-01", "has IP")
    table = progress._Rows(shown).__rich__()
    rendered = Console(file=io.StringIO(), width=120)
    with rendered.capture() as captured:
        rendered.print(table)
    assert "[red]lab-01" in captured.get()
