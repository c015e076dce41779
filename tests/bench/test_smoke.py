"""The first-round scenarios run end to end (`python -m bench quota detection scale --quick`) and
produce every figure and section.

Only that figures exist and are finite numbers is checked, not their values: a quick run is far too
small for them to mean anything. Output goes to a temporary directory, never to bench/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.quick import TEST_TIMEOUT_S, dig, number, run_quick

#: (path in results.json, description): every one must be a finite number.
FIGURES = [
    ("quota_efficiency", "top-level quota efficiency"),
    ("scenarios.quota.quota_efficiency", "quota efficiency"),
    ("scenarios.quota.start_throttled_fraction", "StartWebRTCContact 429 share"),
    ("scenarios.quota.failed_requests", "failed requests"),
    ("scenarios.quota.start_window_s", "start window"),
    ("scenarios.detection.round_robin_theory_mean_s", "round-robin expectation"),
    ("scenarios.scale.ours.peak_rss_mib", "peak RSS"),
    ("scenarios.scale.ours.rss_per_contact_kib", "RSS per contact"),
    ("scenarios.scale.ours.cpu_ms_per_lifecycle", "CPU per lifecycle"),
    ("scenarios.scale.ours.lifecycles_per_cpu_s", "lifecycles per CPU second"),
    ("scenarios.scale.ours.lifecycles_per_wall_s", "lifecycles per wall second"),
    ("scenarios.scale.ours.process.loop_lag_ms.p99", "event-loop lag p99"),
    ("scenarios.scale.ours.describe_polls_per_s", "emulator DescribeContact throughput"),
    ("scenarios.scale.baseline.rss_per_contact_kib", "RSS per contact before (git archive)"),
    ("scenarios.scale.naive.rss_per_contact_kib", "naive RSS per contact"),
    ("scenarios.scale.naive.cpu_ms_per_lifecycle", "naive CPU per lifecycle"),
]
DETECTION = ["ours", "round_robin", "naive"]
DETECTION_FIGURES = [
    "detection_delay_s.p50",
    "detection_delay_s.p95",
    "detection_delay_s.p99",
    "describe_calls_per_contact.mean",
    "describe_throttled",
    "undetected",
]
RATIOS = ["detection_p50", "detection_p95", "detection_p99", "describe_calls_per_contact"]


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_quick_benchmark_produces_every_figure(tmp_path: Path) -> None:
    results, done = run_quick(tmp_path, "quota", "detection", "scale")

    assert results["quick"] is True
    for name in ("quota", "detection", "scale"):
        section = results["scenarios"][name]
        assert section["recorded_run"]["quick"] is True
        assert section["commit"]["sha"] and section["recorded_at"]
    assert results["commit"]["sha"]
    assert {"cpu_model", "cores", "python", "os"} <= set(results["machine"])
    for path, what in FIGURES:
        number(dig(results, path), what)
    for impl in DETECTION:
        for figure in DETECTION_FIGURES:
            number(dig(results, f"scenarios.detection.{impl}.{figure}"), f"{impl} {figure}")
    for other in ("round_robin", "naive"):
        for figure in RATIOS:
            number(dig(results, f"scenarios.detection.ratios.{other}.{figure}"), figure)
    assert isinstance(dig(results, "scenarios.quota.targets.quota_efficiency.pass"), bool)
    assert isinstance(dig(results, "scenarios.scale.targets.rss_per_contact_kib.pass"), bool)

    markdown = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    for heading in ("## 1. Quota efficiency", "## 2. Detection", "## 3. Scale", "## 4. Against"):
        assert heading in markdown
    assert "What limits these figures" in markdown
    assert "quota" in done.stdout
    assert (tmp_path / "plots" / "detection-policies.png").read_bytes().startswith(b"\x89PNG")
