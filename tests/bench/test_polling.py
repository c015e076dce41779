"""`python -m bench polling --quick` runs end to end and records the figures of every combination
of service order, polling policy and DescribeContact budget.

Only that the figures exist is checked, not their values: a quick run is far too small for them
to mean anything. The run writes into the test's directory, never the committed results.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.bench.quick import TEST_TIMEOUT_S, dig, quick_figures

COMBINATIONS = [
    f"{order}-{rate}-{policy}"
    for order in ("fifo", "random")
    for rate in ("10rps", "2rps")
    for policy in ("queue_aware", "plain_backoff")
]
FIGURES = [
    "detection_delay_s.p50",
    "detection_delay_s.p95",
    "describe_calls_per_contact.mean",
    "describe_throttled",
    "undetected",
]


@pytest.mark.slow
@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_quick_polling_scenario_records_every_order_policy_and_budget(tmp_path: Path) -> None:
    figures = quick_figures("polling", tmp_path)

    assert sorted(figures["combinations"]) == sorted(COMBINATIONS)
    for combination in COMBINATIONS:
        for figure in FIGURES:
            value = dig(figures, f"combinations.{combination}.{figure}")
            assert isinstance(value, int | float) and not isinstance(value, bool), figure
            assert math.isfinite(value), f"{combination} {figure} is not finite"
        assert dig(figures, f"combinations.{combination}.completed") is True
    for budget in ("fifo-10rps", "fifo-2rps", "random-10rps", "random-2rps"):
        for figure in ("p50_ratio", "p95_ratio", "not_worse"):
            dig(figures, f"comparisons.{budget}.{figure}")
    assert isinstance(dig(figures, "targets.never_worse.pass"), bool)
    assert isinstance(dig(figures, "targets.keeps_fifo_gain.pass"), bool)
    assert figures["options"]["orders"] == ["fifo", "random"]
    assert math.isfinite(figures["wall_s"])
