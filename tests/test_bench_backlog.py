"""The backlog-under-restarts scenario runs end to end in its quick mode and prints every figure
for both modes (their values mean nothing at that size: only that they exist is checked)."""

from __future__ import annotations

import math

import pytest

from tests.support.bench import quick_figures

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
@pytest.mark.timeout(120)
def test_quick_backlog_scenario_prints_every_figure_for_both_modes() -> None:
    figures = quick_figures("bench.backlog")
    assert set(figures) == {"capacity", "fleet", "deep"}
    for mode, values in figures.items():
        for name in FIGURES:
            value = values[name]
            assert isinstance(value, int | float) and not isinstance(value, bool), (mode, name)
            assert math.isfinite(value), (mode, name, value)
        assert "drain_s" in values and isinstance(values["finals"], dict)
    # Even this small run keeps admission within the bound it announces.
    capacity = figures["capacity"]
    assert capacity["max_unstarted_held_by_a_worker"] <= capacity["admission_bound"]
