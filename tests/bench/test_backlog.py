"""The backlog-under-restarts scenario runs end to end in its quick mode and records every figure
for its three modes (their values mean nothing at that size: only that they exist is checked)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.bench.quick import TEST_TIMEOUT_S, quick_figures

FIGURES = [
    "admission_bound",
    "max_unstarted_held_by_a_worker",
    "quota_efficiency",
    "quota_efficiency_first_90pct",
    "start_throttled",
    "dead_letters",
    "requests_without_final_event",
    "duplicate_contacts",
    "max_receive_count",
]


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_quick_backlog_scenario_records_every_figure_for_every_mode(tmp_path: Path) -> None:
    figures = quick_figures("backlog", tmp_path)
    modes = {"capacity", "fleet", "deep"}
    assert modes <= set(figures) and "timelines" not in figures
    for mode in modes:
        values = figures[mode]
        # Undrained (the deadline guarding a hang passed), its figures would be partial.
        assert values["drain_s"] is not None, f"{mode} did not drain"
        for name in FIGURES:
            value = values[name]
            assert isinstance(value, int | float) and not isinstance(value, bool), (mode, name)
            assert math.isfinite(value), (mode, name, value)
        assert isinstance(values["finals"], dict)
    # Even this small run keeps admission within the bound it announces.
    capacity = figures["capacity"]
    assert capacity["max_unstarted_held_by_a_worker"] <= capacity["admission_bound"]
    assert [r["signal"] for r in capacity["restarts"]] == ["SIGTERM", "SIGKILL", "SIGTERM"]
    assert set(figures["targets"]) == {"capacity", "fleet"}
    assert (tmp_path / "plots" / "backlog-drain.png").read_bytes().startswith(b"\x89PNG")
