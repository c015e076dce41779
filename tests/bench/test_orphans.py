"""`python -m bench orphans --quick` runs end to end: "leave" and "stop" side by side, the dead
calls of each counted from the emulator's ground truth.

A quick run is small, but its one claim holds at any size: with "stop" no agent reaches a contact
the orchestrator let go of, and no stop follows a DescribeContact that showed an agent. The run
writes into the test's directory, never the committed results.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.quick import number, quick_figures


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_quick_orphans_run_counts_dead_calls_for_leave_and_none_for_stop(tmp_path: Path) -> None:
    figures = quick_figures("orphans", tmp_path, timeout_s=170)

    leave, stop = figures["leave"], figures["stop"]
    for run in (leave, stop):
        assert run["completed"]
        number(run["dead_call_agent_s"], "agent time on dead calls")
        number(run["time_to_agent_alive_s"]["p50"], "time to agent of live contacts")
    assert leave["dead_calls"] > 0  # more contacts than the agents reach in max_wait_s
    assert stop["dead_calls"] == 0
    # A stop goes only after a DescribeContact confirms no agent; an agent who connects between
    # that answer and the stop is the race no caller can close, counted but not a fault.
    assert stop["stopped_after_agent_seen"] == 0
    assert stop["stopped_with_agent"] == stop["cut_off_in_race"]
    assert stop["stopped"].get("timed_out/stopped", 0) > 0
    assert leave["stop_contact_calls"] == 0
    assert all(t["pass"] for t in figures["targets"].values())
    markdown = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert "## Agents' dead calls: timed-out contacts left or stopped" in markdown
