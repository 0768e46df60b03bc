"""The bench's own measures: the final I/O counters, image bytes read, and the judging of targets."""

from __future__ import annotations

import os
import sys

import pytest

from bench.bed import evict, parse_io, resident_bytes, run_measured
from bench.measurements import summary
from bench.report import judge

MiB = 1 << 20


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "image.bin"
    path.write_bytes(os.urandom(4 * MiB))
    return path


def test_counters_are_read_after_exit_and_include_reaped_children(image):
    # The shell reads nothing itself: its count is cat's, which it reaped before exiting.
    run = run_measured(["sh", "-c", 'cat "$1" > /dev/null', "sh", str(image)], dict(os.environ), timeout=60)
    assert run.code == 0
    assert run.io["rchar"] >= 4 * MiB
    assert run.io["rchar"] < 5 * MiB


def test_counters_of_a_process_that_reads_nothing(image):
    run = run_measured([sys.executable, "-S", "-c", "pass"], dict(os.environ), timeout=60)
    assert run.code == 0
    assert run.io["rchar"] < 4 * MiB


def test_image_bytes_read_is_zero_unless_the_image_is_read(image):
    evict(image)
    assert resident_bytes(image) == 0
    with open(image, "rb") as f:
        f.seek(2 * MiB)
        f.read(1)  # one byte brings at least one page back
    assert 0 < resident_bytes(image) < 4 * MiB
    image.read_bytes()
    assert resident_bytes(image) == 4 * MiB


def test_parse_io():
    text = "rchar: 12\nwchar: 3\nsyscr: 1\nread_bytes: 4096\ncancelled_write_bytes: 0\n"
    assert parse_io(text) == {"rchar": 12, "wchar": 3, "syscr": 1, "read_bytes": 4096, "cancelled_write_bytes": 0}


def test_summary_is_the_median_run_with_every_sample():
    runs = [{"seconds": 3.0, "x": "c"}, {"seconds": 1.0, "x": "a"}, {"seconds": 2.0, "x": "b"}]
    assert summary(runs) == {"seconds": 2.0, "x": "b", "samples": [3.0, 1.0, 2.0]}


def image_part(*, fresh: float, kept: float, kept_read: int, noop: float, noop_read: int) -> dict:
    return {
        "gpgv": {"seconds": 2.0},
        "gpgv_cold": {"seconds": 2.0},
        "fresh": {"seconds": fresh},
        "template_kept": {"seconds": kept, "image_bytes_read": kept_read},
        "noop": {"seconds": noop, "image_bytes_read": noop_read},
    }


def test_judge_image_targets_at_their_bounds():
    passed = judge({"image": image_part(fresh=4.0, kept=1.6, kept_read=0, noop=0.99, noop_read=0)})
    assert {name: t["pass"] for name, t in passed.items()} == {
        "fresh_deploy_3_vs_gpgv": True,
        "template_kept_deploy_3_vs_gpgv": True,
        "template_kept_image_bytes_read": True,
        "noop_rerun_seconds": True,
        "noop_rerun_image_bytes_read": True,
    }
    missed = judge({"image": image_part(fresh=4.1, kept=1.7, kept_read=4096, noop=1.0, noop_read=4096)})
    assert not any(t["pass"] for t in missed.values())
    assert missed["fresh_deploy_3_vs_gpgv"]["value"] == 2.05


def test_judge_scale_uses_the_largest_and_smallest_count():
    scale = {"template_present": {1: {"seconds": 2.0, "soap_requests_per_node": 30},
                                  30: {"seconds": 6.5, "soap_requests_per_node": 6}}}
    targets = judge({"scale": scale})
    assert targets["deploy_30_vs_1_template_present"] == {"value": 3.25, "target": "<= 3.0", "pass": False}
    assert targets["soap_requests_per_node_30"]["pass"] is True


def test_judge_upload_fetch_and_memory():
    mem = {"upload": {"vmcoreos": {"mb_per_s": 450.0}, "curl_mean_mb_per_s": 500.0},
           "small": {"ova_mib": 64.0, "peak_rss_mb": 60.0}, "big": {"ova_mib": 1024.0, "peak_rss_mb": 75.0}}
    targets = judge({"memory": mem, "fetch": {"fetch_seconds": 2.5, "gpgv_seconds": 2.0}})
    assert targets["upload_vs_curl"]["pass"] is True
    assert targets["fetch_verify_vs_gpgv"]["pass"] is False
    assert targets["peak_rss_big_1024mib_mb"]["pass"] is True
    assert targets["peak_rss_growth_mb"] == {"value": 15.0, "target": "<= 10 MB or 15% (flat)", "pass": False}


def test_the_fetch_floor_is_its_cpu_over_the_cores_plus_a_fetch_that_reads_nothing():
    from bench.report import fetch_bound

    fetch = {"fetch_cpu_user_seconds": 3.0, "fetch_cpu_system_seconds": 1.0, "cpus": 2,
             "known_fetch_seconds": 0.5, "gpgv_seconds": 2.0}
    assert fetch_bound(fetch) == {"cpu_seconds": 4.0, "spread_seconds": 2.0, "floor_seconds": 2.5, "floor_vs_gpgv": 1.25}
    assert fetch_bound({"fetch_seconds": 2.5, "gpgv_seconds": 2.0}) is None  # an older run's figures
