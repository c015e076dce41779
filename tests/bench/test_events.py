"""`python -m bench events --quick` runs end to end and records every figure of the contact-events
scenario (events on, split by whether the CONNECTED_TO_AGENT event arrived; events off; events on
with agents taking contacts in random order), leaving every other scenario's recorded section as it
was.

Only that the figures exist is checked, not their values: a quick run is far too small for them
to mean anything. The run writes into the test's directory, never the committed results.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from tests.bench.quick import REPO, TEST_TIMEOUT_S, dig, number, run_quick

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
@pytest.mark.timeout(TEST_TIMEOUT_S)
def test_quick_events_run_records_its_section_and_leaves_the_others_untouched(
    tmp_path: Path,
) -> None:
    committed = REPO / "bench" / "results.json"
    shutil.copy(committed, tmp_path / "results.json")
    before = json.loads(committed.read_text(encoding="utf-8"))

    results, _ = run_quick(tmp_path, "events")

    others = {k: v for k, v in before["scenarios"].items() if k != "events"}
    assert {k: v for k, v in results["scenarios"].items() if k != "events"} == others
    figures = results["scenarios"]["events"]
    assert figures["recorded_at"] != before["scenarios"]["events"]["recorded_at"]
    assert figures["recorded_run"]["quick"] is True and figures["commit"]["sha"]
    assert "plot_values" not in figures  # for the plot only
    markdown = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    for heading in ("## 1. Quota", "## Contact events", "## Backlog", "## Polling", "## Fleet"):
        assert heading in markdown
    assert (tmp_path / "plots" / "events-detection.png").read_bytes().startswith(b"\x89PNG")
    check_figures(figures)


def check_figures(figures: dict[str, object]) -> None:
    for run in ("events_on", "events_off", "events_on_random_order"):
        for figure in RUN_FIGURES:
            value = dig(figures, f"{run}.{figure}")
            number(value, f"{run} {figure}", finite=figure != "detection_delay_s.p99")
        assert dig(figures, f"{run}.completed") is True
    for fate in ("arrived", "lost"):
        number(dig(figures, f"events_on.{fate}.contacts"), f"{fate} contacts")
        number(dig(figures, f"events_on.{fate}.detection_delay_s.p95"), f"{fate} p95", finite=False)
        number(
            dig(figures, f"events_on.{fate}.describe_calls_per_contact.mean"), fate, finite=False
        )
    # Every connected contact is either in "arrived" or in "lost".
    on = dig(figures, "events_on")
    assert on["arrived"]["contacts"] + on["lost"]["contacts"] == on["connected"]
    assert on["detected_via"]["event"] > 0
    assert dig(figures, "events_off.detected_via.event") == 0
    for run in ("events_on", "events_on_random_order"):
        wakes = dig(figures, f"{run}.passed_wakes")
        assert set(wakes) == {"served", "waiting"}, wakes
        for result, count in wakes.items():
            number(count, f"{run} passed wakes {result}")
    for target in ("arrived_detection_p95_s", "describe_calls_per_contact_mean"):
        assert isinstance(dig(figures, f"targets.{target}.pass"), bool)
    assert math.isfinite(dig(figures, "wall_s"))
