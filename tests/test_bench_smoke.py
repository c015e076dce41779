"""The benchmark suite runs end to end (`python -m bench --quick`) and produces every figure.

Only that figures exist and are finite numbers is checked, not their values: a quick run is far too
small for them to mean anything. Output goes to a temporary directory, never to bench/.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

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


def _get(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        assert isinstance(data, dict) and key in data, f"missing {dotted!r} (at {key!r})"
        data = data[key]
    return data


def _finite(value: Any, what: str) -> None:
    assert isinstance(value, int | float) and not isinstance(value, bool), f"{what}: {value!r}"
    assert math.isfinite(value), f"{what} is not finite: {value!r}"


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_quick_benchmark_produces_every_figure(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=140,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert results["quick"] is True
    assert results["commit"]["sha"]
    assert {"cpu_model", "cores", "python", "os"} <= set(results["machine"])
    for path, what in FIGURES:
        _finite(_get(results, path), what)
    for impl in DETECTION:
        for figure in DETECTION_FIGURES:
            _finite(_get(results, f"scenarios.detection.{impl}.{figure}"), f"{impl} {figure}")
    for other in ("round_robin", "naive"):
        for figure in RATIOS:
            _finite(_get(results, f"scenarios.detection.ratios.{other}.{figure}"), figure)
    assert isinstance(_get(results, "scenarios.quota.targets.quota_efficiency.pass"), bool)

    markdown = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    for heading in ("## 1. Quota efficiency", "## 2. Detection", "## 3. Scale", "## 4. Against"):
        assert heading in markdown
    assert "What limits these figures" in markdown
    assert "quota" in done.stdout
