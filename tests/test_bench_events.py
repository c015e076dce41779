"""`python -m bench.events --quick` runs end to end and prints every figure of the contact-events
scenario (events on, split by whether the CONNECTED_TO_AGENT event arrived; events off; events on
with agents taking contacts in random order).

Only that the figures exist is checked, not their values: a quick run is far too small for them
to mean anything. A quick run writes under bench/.runs/, never the committed results.
"""

from __future__ import annotations

import math

import pytest

from tests.support.bench import dig, number, quick_figures

RUN_FIGURES = [
    "detection_delay_s.p50",
    "detection_delay_s.p95",
    "detection_delay_s.p99",
    "describe_calls_per_contact.mean",
    "describe_calls",
    "describe_throttled",
    "undetected",
]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_events_scenario_prints_detection_split_by_event_fate() -> None:
    figures = quick_figures("bench.events")

    for run in ("events_on", "events_off", "events_on_random_order"):
        for figure in RUN_FIGURES:
            value = dig(figures, f"{run}.{figure}")
            number(value, f"{run} {figure}", finite=False)
            if figure != "detection_delay_s.p99":
                assert math.isfinite(value), f"{run} {figure} is not finite"
        assert dig(figures, f"{run}.completed") is True
    for fate in ("arrived", "lost"):
        number(dig(figures, f"events_on.{fate}.contacts"), f"{fate} contacts", finite=False)
        number(dig(figures, f"events_on.{fate}.detection_delay_s.p95"), f"{fate} p95", finite=False)
        number(
            dig(figures, f"events_on.{fate}.describe_calls_per_contact.mean"), fate, finite=False
        )
    # Every connected contact is either in "arrived" or in "lost".
    on = figures["events_on"]
    assert on["arrived"]["contacts"] + on["lost"]["contacts"] == on["connected"]
    assert on["detected_via"]["event"] > 0
    assert figures["events_off"]["detected_via"]["event"] == 0
    for run in ("events_on", "events_on_random_order"):
        wakes = dig(figures, f"{run}.passed_wakes")
        assert set(wakes) == {"served", "waiting"}, wakes
        for result, count in wakes.items():
            number(count, f"{run} passed wakes {result}")
    for target in ("arrived_detection_p95_s", "describe_calls_per_contact_mean"):
        assert isinstance(dig(figures, f"targets.{target}.pass"), bool)
    assert math.isfinite(figures["wall_s"])
