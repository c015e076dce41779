"""`orchestrator demo` (orchestrator/testing/demo.py): what its stream and summary show."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orchestrator.testing.demo import CANCELS, NEVER_ANSWERED, run_demo
from orchestrator.testing.demo_stream import Printer, Waits, detail, plural, seconds


def _record(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "request_id": "r-1", "contact_id": "c" * 36, "data": data}


def test_lines_round_seconds_alike_and_count_polls_in_good_grammar() -> None:
    assert plural(1, "poll") == "1 poll"
    assert plural(2, "poll") == "2 polls"
    assert plural(0, "request") == "0 requests"
    assert seconds(4.452) == "4.5 s"
    assert seconds(3) == "3.0 s"
    assert detail(_record("contact.agent_connected", waited_s=4.452, polls=1)) == (
        "after 4.5 s in queue, 1 poll"
    )
    assert detail(_record("contact.agent_connected", waited_s=37.25, polls=5)) == (
        "after 37.2 s in queue, 5 polls"
    )


def test_a_disconnect_line_says_why_the_contact_ended() -> None:
    record = _record("contact.disconnected", reason="CUSTOMER_DISCONNECT", polls=2)

    assert detail(record) == "CUSTOMER_DISCONNECT before an agent, 2 polls"


def test_a_skipped_screen_share_names_the_sides_that_may_not_share() -> None:
    record = _record("screen_sharing.skipped", reason="capability_not_allowed", sides=["Agent"])

    assert detail(record) == "capability_not_allowed (Agent)"


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_waits_are_told_apart_by_whether_the_capacity_gate_closed_meanwhile() -> None:
    clock, out, waited = _Clock(), io.StringIO(), dict[str, str]()
    printer = Printer(out, started=0.0, total=4)
    waits = Waits(printer, waited, rate_per_s=2.0, burst=5.0, clock=clock)

    def log(event: str, rid: str | None = None) -> None:
        waits.record({"event": event, "request_id": rid})

    for rid in ("quick", "rate", "capacity", "rejected"):
        log("request.received", rid)
    clock.now += 0.3
    log("contact.started", "quick")  # within one token interval and the margin: no line
    waits.record({"event": "request.rejected", "request_id": "rejected", "final": True})
    clock.now += 1.0
    log("contact.started", "rate")
    log("connect.capacity_reached")
    clock.now += 5.0
    log("connect.capacity_available")
    log("contact.started", "capacity")

    assert waited == {"rate": "the start rate", "capacity": "call capacity"}
    assert waits.unstarted == {}
    lines = [line.split(None, 2)[2] for line in out.getvalue().splitlines()]
    assert lines == [
        "rate               waited for the start rate 1.3 s (StartWebRTCContact 2/s, burst 5)",
        "-                  capacity gate closed      at the concurrent-call cap; 1 request waits",
        "-                  capacity gate open        a start got through",
        "capacity           waited for call capacity  6.3 s (the concurrent-call cap)",
    ]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_the_demo_shows_the_start_rate_and_the_capacity_gate_and_keeps_the_log(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    log_path = tmp_path / "worker.log"

    result = await run_demo(20, out=out, seed=7, log_path=log_path)

    text = out.getvalue()
    assert result.completed, text
    # 19 valid requests against a start quota of 2/s and a cap of 10 concurrent calls: some
    # wait for rate tokens, and the cap is reached before the first calls end.
    assert set(result.waited.values()) == {"the start rate", "call capacity"}
    for rid, reason in result.waited.items():
        assert re.search(rf"worker\s+{rid}\s+waited for {reason} +\d+\.\d s", text), rid
    assert re.search(r"worker\s+-\s+capacity gate closed", text)
    assert re.search(r"worker\s+-\s+capacity gate open", text)
    counts = Counter(result.waited.values())
    rate, capacity = (
        plural(counts["the start rate"], "request"),
        plural(counts["call capacity"], "request"),
    )
    assert (
        f"waited to start           {rate} for the start rate, {capacity} for call capacity" in text
    )
    # The worker's log is kept where the demo says, every line JSON.
    assert result.log_path == log_path
    assert f"Worker log: {log_path}" in text
    names = [json.loads(line)["event"] for line in log_path.read_text().splitlines()]
    assert "connect.capacity_reached" in names and "contact.started" in names
    # Lifecycle events and Connect contact events are named as such.
    assert "lifecycle events" in text and "Connect contact events read" in text
    assert not re.search(r"(?<!\d)1 polls\b", text)
    # One customer cancels while queued; one contact no agent ever gets is stopped at its
    # deadline; and no agent reached a contact after the orchestrator let go of it.
    assert result.finals[CANCELS] == "request.cancelled (waiting_for_agent)"
    assert result.finals[NEVER_ANSWERED] == "contact.timed_out (contact stopped)"
    assert (result.reached_after_let_go, result.stopped_with_agent) == ([], [])
    assert "cancelled stopped 1" in text and "timed_out stopped 1" in text
    assert "0 contacts reached an agent after the orchestrator let go, 0 stopped while" in text
