"""The kit's percentiles: linear interpolation between the closest ranks, NaN for no values."""

from __future__ import annotations

import math

from orchestrator.testing.stats import distribution, percentile


def test_percentile_interpolates_between_the_closest_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 0.5) == 2.5
    assert percentile(values, 1.0) == 4.0
    assert math.isclose(percentile(values, 0.95), 3.85)
    assert percentile([7.0], 0.99) == 7.0


def test_no_values_give_nan_and_a_zero_count() -> None:
    assert math.isnan(percentile([], 0.5))
    empty = distribution([])
    assert empty["count"] == 0
    assert all(math.isnan(empty[k]) for k in ("mean", "p50", "p95", "p99", "max"))


def test_distribution_summarises_count_mean_percentiles_and_max() -> None:
    summary = distribution([float(v) for v in range(1, 101)])
    assert summary == {
        "count": 100,
        "mean": 50.5,
        "p50": 50.5,
        "p95": percentile([float(v) for v in range(1, 101)], 0.95),
        "p99": percentile([float(v) for v in range(1, 101)], 0.99),
        "max": 100.0,
    }
    assert math.isclose(summary["p95"], 95.05)
