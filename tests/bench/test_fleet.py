"""The fleet scenario runs end to end in its quick mode and prints every figure for its three
modes (their values mean nothing at that size: only that they exist is checked); the detection
plot is drawn from recorded figures alone."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.detection import plot, policies
from tests.bench.quick import TEST_TIMEOUT_S, quick_figures

MODES = {"static", "independent", "fleet"}
FIGURES = [
    "start_rate_share",
    "start_throttled_share",
    "connect_throttled_share",
    "dead_letters",
    "requests_without_final_event",
    "duplicate_contacts",
    "requests_with_a_contact",
    "detection_p50_s",
    "detection_p95_s",
]


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_quick_fleet_scenario_records_every_figure_for_the_three_modes(tmp_path: Path) -> None:
    figures = quick_figures("fleet", tmp_path)
    assert set(figures) >= MODES
    for mode in MODES:
        # Undrained (the deadline guarding a hang passed), its figures would be partial.
        assert figures[mode]["drain_s"] is not None, f"{mode} did not drain"
        values = figures[mode] | {
            "detection_p50_s": figures[mode]["detection_delay_s"]["p50"],
            "detection_p95_s": figures[mode]["detection_delay_s"]["p95"],
        }
        for name in FIGURES:
            value = values[name]
            assert isinstance(value, int | float) and not isinstance(value, bool), (mode, name)
            assert math.isfinite(value), (mode, name, value)
        assert values["phases"]
        assert values["schedule"][-1]["workers"] == 0
        # Even this small run loses nothing.
        assert values["requests_with_a_contact"] == 18, (mode, values)
        assert values["requests_without_final_event"] == 0, (mode, values)
    latency = figures["acquire_latency"]
    assert latency["fleet_redis"]["count"] == latency["local_bucket"]["count"] > 0
    assert set(figures["targets"]) == {"start_rate_share", "start_throttled_share"}
    assert (tmp_path / "plots" / "fleet-start-rate.png").read_bytes().startswith(b"\x89PNG")


def _delays(p50: float, p95: float, p99: float, count: int) -> dict[str, float]:
    return {"count": count, "mean": p50, "p50": p50, "p95": p95, "p99": p99, "max": p99}


def test_detection_plot_is_drawn_from_the_recorded_figures_alone(tmp_path: Path) -> None:
    detection = {
        "options": {"contacts": 10, "agents": 4},
        "ours": {"contacts": 10, "detection_delay_s": _delays(1.0, 2.0, 3.0, 10)},
        "round_robin": {"contacts": 10, "detection_delay_s": _delays(2.0, 4.0, 5.0, 10)},
        "naive": {"contacts": 10, "detection_delay_s": _delays(3.0, 8.0, 9.0, 7)},
    }
    out = tmp_path / "detection.png"

    plot(detection, out)

    assert policies(detection)["naive"] == {
        "p50": 3.0, "p95": 8.0, "p99": 9.0, "count": 7.0, "contacts": 10.0
    }  # fmt: skip
    assert out.read_bytes().startswith(b"\x89PNG")
