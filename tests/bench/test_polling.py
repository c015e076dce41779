"""`python -m bench polling --quick` runs end to end and records, for every combination of service
order and contacts waiting, the figures of the budget fill, backoff only and round-robin side by
side, their comparison and the targets.

Only that the figures exist is checked, not their values: a quick run is far too small for them
to mean anything. The run writes into the test's directory, never the committed results.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.bench.quick import TEST_TIMEOUT_S, dig, number, quick_figures

#: The quick run's combinations: each service order with 6 contacts waiting.
COMBINATIONS = ["fifo-6", "random-6"]
IMPLEMENTATIONS = ["budget_fill", "backoff_only", "round_robin"]
FIGURES = [
    "detection_delay_s.p50",
    "detection_delay_s.p95",
    "describe_calls_per_contact.mean",
    "describe_per_s",
    "waiting_mean",
    "describe_throttled",
    "undetected",
]


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_quick_polling_scenario_records_every_policy_side_by_side(tmp_path: Path) -> None:
    figures = quick_figures("polling", tmp_path)

    assert sorted(figures["runs"]) == COMBINATIONS
    for combination in COMBINATIONS:
        assert sorted(figures["runs"][combination]) == sorted(IMPLEMENTATIONS)
        for implementation in IMPLEMENTATIONS:
            for figure in FIGURES:
                number(dig(figures, f"runs.{combination}.{implementation}.{figure}"), figure)
        comparison = dig(figures, f"comparisons.{combination}")
        for ratio in ("budget_fill_vs_round_robin", "backoff_only_vs_round_robin", "margin"):
            number(comparison[ratio], ratio)
        assert sorted(comparison["budget_used"]) == sorted(IMPLEMENTATIONS)
        assert isinstance(dig(figures, f"targets.vs_round_robin.{combination}.pass"), bool)
    assert isinstance(dig(figures, "targets.no_429s.pass"), bool)
    assert "rerun" not in figures  # a full run only
    assert figures["options"]["quick"] is True
    assert math.isfinite(figures["wall_s"])
