"""`python -m bench.polling --quick` runs end to end and prints the figures of every combination
of service order, polling policy and DescribeContact budget.

Only that the figures exist is checked, not their values: a quick run is far too small for them
to mean anything. A quick run writes under bench/.runs/, never the committed results.
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


def _get(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        assert isinstance(data, dict) and key in data, f"missing {dotted!r} (at {key!r})"
        data = data[key]
    return data


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_polling_scenario_prints_every_order_policy_and_budget() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.polling", "--quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])

    assert sorted(figures["combinations"]) == sorted(COMBINATIONS)
    for combination in COMBINATIONS:
        for figure in FIGURES:
            value = _get(figures, f"combinations.{combination}.{figure}")
            assert isinstance(value, int | float) and not isinstance(value, bool), figure
            assert math.isfinite(value), f"{combination} {figure} is not finite"
        assert _get(figures, f"combinations.{combination}.completed") is True
    for budget in ("fifo-10rps", "fifo-2rps", "random-10rps", "random-2rps"):
        for figure in ("p50_ratio", "p95_ratio", "not_worse"):
            _get(figures, f"comparisons.{budget}.{figure}")
    assert isinstance(_get(figures, "targets.never_worse.pass"), bool)
    assert isinstance(_get(figures, "targets.keeps_fifo_gain.pass"), bool)
    assert figures["options"]["orders"] == ["fifo", "random"]
    assert math.isfinite(figures["wall_s"])
