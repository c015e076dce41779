"""`python -m bench.events --quick` runs end to end and prints every figure of the contact-events
scenario (events on, split by whether the CONNECTED_TO_AGENT event arrived, and events off).

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

RUN_FIGURES = [
    "detection_delay_s.p50",
    "detection_delay_s.p95",
    "detection_delay_s.p99",
    "describe_calls_per_contact.mean",
    "describe_calls",
    "describe_throttled",
    "undetected",
]


def _get(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        assert isinstance(data, dict) and key in data, f"missing {dotted!r} (at {key!r})"
        data = data[key]
    return data


def _number(value: Any, what: str) -> None:
    assert isinstance(value, int | float) and not isinstance(value, bool), f"{what}: {value!r}"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_events_scenario_prints_detection_split_by_event_fate() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.events", "--quick"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])

    for run in ("events_on", "events_off"):
        for figure in RUN_FIGURES:
            value = _get(figures, f"{run}.{figure}")
            _number(value, f"{run} {figure}")
            if figure != "detection_delay_s.p99":
                assert math.isfinite(value), f"{run} {figure} is not finite"
        assert _get(figures, f"{run}.completed") is True
    for fate in ("arrived", "lost"):
        _number(_get(figures, f"events_on.{fate}.contacts"), f"{fate} contacts")
        _number(_get(figures, f"events_on.{fate}.detection_delay_s.p95"), f"{fate} p95")
        _number(_get(figures, f"events_on.{fate}.describe_calls_per_contact.mean"), fate)
    # Every connected contact is either in "arrived" or in "lost".
    on = figures["events_on"]
    assert on["arrived"]["contacts"] + on["lost"]["contacts"] == on["connected"]
    assert on["detected_via"]["event"] > 0
    assert figures["events_off"]["detected_via"]["event"] == 0
    for target in ("arrived_detection_p95_s", "describe_calls_per_contact_mean"):
        assert isinstance(_get(figures, f"targets.{target}.pass"), bool)
    assert math.isfinite(figures["wall_s"])
