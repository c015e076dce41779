"""`python -m bench positions --quick` runs end to end and records every variant's figures, and
the truth it measures against is the emulator's rule (FIFO, every application's contacts).

Only that the quick run's figures exist is checked, not their values: a quick run is far too
small for them to mean anything. The run writes into the test's directory, never the committed
results.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from bench.positions import VARIANTS, PositionLog, accuracy, true_position
from tests.bench.quick import dig, quick_figures

FIGURES = [
    "within_one",
    "first_position_s.p95",
    "calls_per_contact",
    "throttled",
    "samples",
]


def contact(enqueued: float, left: float | None = None) -> dict[str, Any]:
    return {"EnqueuedAt": enqueued, "ConnectedToAgentAt": left}


def test_the_true_position_counts_everyone_enqueued_before_and_still_waiting() -> None:
    other = contact(0.0, left=10.0)  # another application's, served at 10 s
    first, second = contact(1.0, left=20.0), contact(2.0)
    everyone = [other, first, second]
    assert true_position(everyone, second, 5.0) == 3
    assert true_position(everyone, second, 10.0) == 2
    assert true_position(everyone, second, 20.0) == 1


def test_accuracy_samples_each_second_of_the_wait_from_the_first_position_heard() -> None:
    other, mine = contact(0.0, left=3.5), contact(1.0, left=6.0)
    log = PositionLog()
    log.started["r"] = 0.5
    log.heard["r"] = [(1.5, 2, "connect"), (4.0, 1, "inferred")]
    # Samples at 1.5, 2.5, 3.5 (truth 2, 2, 1: heard 2), 4.5, 5.5 (truth 1: heard 1).
    figures = accuracy(log, {"r": mine}, [other, mine])
    assert figures["samples"] == 5
    assert figures["within_one"] == 1.0
    assert figures["error"]["max"] == 1.0
    assert figures["first_position_s"]["max"] == 1.0
    assert figures["inferred_events"] == 1


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_quick_positions_scenario_records_every_variant(tmp_path: Path) -> None:
    figures = quick_figures("positions", tmp_path, timeout_s=170)

    assert sorted(figures["variants"]) == sorted(VARIANTS)
    for variant in VARIANTS:
        for figure in FIGURES:
            value = dig(figures, f"variants.{variant}.{figure}")
            assert isinstance(value, int | float) and not isinstance(value, bool), figure
            assert math.isfinite(value), f"{variant} {figure} is not finite"
        assert dig(figures, f"variants.{variant}.completed") is True
    for target in ("within_one", "first_position_p95_s", "throttled"):
        assert isinstance(dig(figures, f"targets.{target}.pass"), bool)
