"""--metrics-file: per command and cluster, the last success survives a failure, the file is replaced whole."""

from __future__ import annotations

import os
import threading

import pytest
import typer

from vmcoreos.cli import metrics
from vmcoreos.cli.application import App
from vmcoreos.errors import VSphereError

REBUILD = ("rebuild", "lab")


def test_a_failure_keeps_the_last_success_and_other_series_stay(tmp_path):
    path = tmp_path / "vmcoreos.prom"
    metrics.record(path, command="rebuild", cluster="lab", code=0, started=100.0, ended=160.5, replaced=3)
    metrics.record(path, command="status", cluster="lab", code=6, started=170.0, ended=171.0, replaced=0)
    metrics.record(path, command="rebuild", cluster="lab", code=1, started=200.0, ended=205.0, replaced=0)
    series = metrics.read(path)
    assert series[REBUILD] == {
        "last_run_timestamp_seconds": 205.0, "last_success_timestamp_seconds": 160.5,
        "last_failure_timestamp_seconds": 205.0, "last_run_duration_seconds": 5.0, "last_run_exit_code": 1,
        "last_run_nodes_replaced": 0,
    }
    assert series[("status", "lab")]["last_run_exit_code"] == 6


def test_the_file_is_replaced_whole_and_lines_not_ours_are_dropped(tmp_path):
    path = tmp_path / "vmcoreos.prom"
    path.write_text('garbage line\nvmcoreos_unknown{command="x",cluster="y"} 1\n')
    before = path.stat().st_ino
    metrics.record(path, command="rebuild", cluster='a"b\\c', code=0, started=1.0, ended=2.0, replaced=1)
    assert path.stat().st_ino != before  # renamed into place, never rewritten in place
    text = path.read_text()
    assert "garbage" not in text and "vmcoreos_unknown" not in text
    assert 'cluster="a\\"b\\\\c"' in text
    assert metrics.read(path)[("rebuild", 'a"b\\c')]["last_run_nodes_replaced"] == 1


def test_concurrent_runs_lose_no_series(tmp_path):
    path = tmp_path / "vmcoreos.prom"
    threads = [threading.Thread(target=metrics.record, args=(path,), kwargs=dict(
        command="status", cluster=f"c{i}", code=0, started=0.0, ended=1.0, replaced=0)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(cluster for _, cluster in metrics.read(path)) == sorted(f"c{i}" for i in range(12))


@pytest.mark.parametrize("raised, code", [(None, 0), (VSphereError("vCenter refused"), 1), (typer.Exit(6), 6)])
def test_a_run_records_its_exit_code(tmp_path, raised, code):
    app = App()
    app.command, app.cluster, app.metrics_file = "status", "lab", tmp_path / "m.prom"
    try:
        with app.run():
            if raised is not None:
                raise raised
    except typer.Exit as exc:
        assert exc.exit_code == code
    assert metrics.read(tmp_path / "m.prom")[("status", "lab")]["last_run_exit_code"] == code


def test_an_unwritable_metrics_file_warns_and_the_run_keeps_its_code(tmp_path, capsys):
    app = App()
    app.command, app.metrics_file = "status", tmp_path / "missing" / "m.prom"
    with app.run():
        pass
    err = capsys.readouterr().err
    assert err.startswith(f"vmcoreos: WARNING: could not write --metrics-file {tmp_path / 'missing' / 'm.prom'}: ")
    assert not os.path.exists(tmp_path / "missing")
