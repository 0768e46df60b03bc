"""The metrics file as Debian's prometheus-node-exporter reads it (textfile collector); the file's
own rules are unit-tested in tests/cli/test_metrics.py."""

from __future__ import annotations

from tests.harness import textfile
from vmcoreos.cli import metrics


def test_node_exporter_reads_every_series(tmp_path):
    path = tmp_path / "vmcoreos.prom"
    metrics.record(path, command="rebuild", cluster="lab", code=0, started=10.0, ended=70.0, replaced=3)
    metrics.record(path, command="status", cluster="lab", code=1, started=80.0, ended=81.0, replaced=0)
    exposition = textfile.scrape(tmp_path)
    assert textfile.scrape_error(exposition) == 0
    got = textfile.samples(exposition, "vmcoreos_")
    labels = frozenset({("command", "rebuild"), ("cluster", "lab")})
    assert got[("vmcoreos_last_success_timestamp_seconds", labels)] == 70.0
    assert got[("vmcoreos_last_run_nodes_replaced", labels)] == 3
    assert got[("vmcoreos_last_run_exit_code", frozenset({("command", "status"), ("cluster", "lab")}))] == 1
