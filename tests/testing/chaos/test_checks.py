"""The chaos checks catch what they claim to: each broken promise, planted in a clean run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.engine.request import client_token
from orchestrator.testing.chaos import ChaosPlan, ChaosReport, Planned, Poison, check
from orchestrator.testing.ground_truth import cut_off

SHARE, DECLINES, NOT_ALLOWED = "req-share", "req-declines", "req-not-allowed"
TOKEN = "AbCdEf0123456789GhIjKl0123456789MnOpQr"
BOTH = {"Customer": {"ScreenShare": "SEND"}, "Agent": {"ScreenShare": "SEND"}}


def event(rid: str, kind: str, *, final: bool = False, **data: Any) -> dict[str, Any]:
    return {
        "id": f"{rid}:{kind}",
        "type": kind,
        "request_id": rid,
        "contact_id": f"c-{rid}",
        "final": final,
        "time": "1970-01-01T00:00:50.000Z",  # before the agents below (at 100.0)
        "data": data,
    }


def contact(rid: str, *, starts: int = 0, caps: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "ContactId": f"c-{rid}",
        "ClientToken": client_token(rid, "start"),
        "Request": {"AllowedCapabilities": BOTH if caps is None else caps},
        "ConnectedToAgentAt": 100.0,
        "ScreenSharingStartedAt": 101.0 if starts else None,
        "ScreenSharingStarts": starts,
        "StoppedAt": None,
        "StoppedWithAgent": False,
        "LastDescribedAt": 100.5,
    }


def clean_report(tmp_path: Path) -> ChaosReport:
    log = tmp_path / "worker-1.log"
    log.write_text(json.dumps({"event": "worker.started"}) + "\n")
    started: dict[str, Any] = {
        "ParticipantToken": TOKEN,
        "ConnectionData": {"Attendee": {"JoinToken": "j" * 40}},
    }
    no_customer = {"Customer": {"Video": "SEND"}, "Agent": {"ScreenShare": "SEND"}}
    report = ChaosReport(
        ChaosPlan(),
        valid=[
            Planned(SHARE, "body-share", "share"),
            Planned(DECLINES, "body-declines", "declines"),
            Planned(NOT_ALLOWED, "body-not-allowed", "not-allowed"),
        ],
        poison=[Poison("not json", None), Poison('{"RequestId": "bad"}', "bad")],
        events=[
            event(SHARE, "request.received"),
            event(SHARE, "contact.started", **started),
            event(SHARE, "screen_sharing.started", final=True),
            event(SHARE, "screen_sharing.started", final=True),  # a duplicate: allowed
            event(DECLINES, "screen_sharing.skipped", final=True, reason="not_requested"),
            event(
                NOT_ALLOWED, "screen_sharing.skipped", final=True, reason="capability_not_allowed"
            ),
            event("bad", "request.rejected", final=True, errors=[]),
        ],
        contacts=[
            contact(SHARE, starts=1),
            contact(DECLINES),
            contact(NOT_ALLOWED, caps=no_customer),
        ],
        dead_letters=['{"RequestId": "bad"}', "not json"],
        exits=[("worker-1", "SIGKILL", -9), ("worker-2", "SIGTERM", 0)],
        worker_logs=[log],
    )
    assert check(report) == []
    return report


Plant = Callable[[ChaosReport], None]


def conflicting_final(report: ChaosReport) -> None:
    report.events.append(event(SHARE, "request.failed", final=True))


def second_contact(report: ChaosReport) -> None:
    report.contacts.append({**contact(SHARE), "ContactId": "c-other"})


def sharing_not_allowed(report: ChaosReport) -> None:
    report.contacts[2]["ScreenSharingStarts"] = 1
    report.contacts[2]["ScreenSharingStartedAt"] = 101.0


def shared_twice(report: ChaosReport) -> None:
    report.contacts[0]["ScreenSharingStarts"] = 2


def shared_before_agent(report: ChaosReport) -> None:
    report.contacts[0]["ScreenSharingStartedAt"] = 99.0


def started_without_sharing(report: ChaosReport) -> None:
    report.contacts[0]["ScreenSharingStarts"] = 0


def no_final(report: ChaosReport) -> None:
    report.events = [e for e in report.events if e["request_id"] != DECLINES]


def poison_reached_connect(report: ChaosReport) -> None:
    report.contacts.append(contact("bad"))


def poison_got_received(report: ChaosReport) -> None:
    report.events.append(event("bad", "request.received"))


def valid_in_dlq(report: ChaosReport) -> None:
    report.dead_letters.append("body-share")


def left_in_flight(report: ChaosReport) -> None:
    report.left_in_queue = (0, 1)


def unclean_exit(report: ChaosReport) -> None:
    report.exits.append(("worker-3", "SIGTERM", 1))


def token_in_log(report: ChaosReport) -> None:
    report.worker_logs[0].write_text(json.dumps({"event": "oops", "t": TOKEN}) + "\n")


def crash_in_log(report: ChaosReport) -> None:
    lines = ["Traceback (most recent call last):", json.dumps({"event": "worker.stopped"})]
    report.worker_logs[0].write_text("\n".join(lines) + "\n")


def wrong_outcome(report: ChaosReport) -> None:
    report.events = [e for e in report.events if e["request_id"] != DECLINES]
    report.events.append(event(DECLINES, "screen_sharing.started", final=True))


def agent_after_let_go(report: ChaosReport) -> None:
    report.events = [e for e in report.events if e["request_id"] != DECLINES]
    report.events.append(event(DECLINES, "contact.timed_out", final=True))


def stopped_with_agent(report: ChaosReport) -> None:
    # A DescribeContact at 100.5 showed the agent (connected at 100.0); stopped at 101.0.
    report.contacts[0].update(StoppedWithAgent=True, StoppedAt=101.0)


def cancelled_unasked(report: ChaosReport) -> None:
    report.events = [e for e in report.events if e["request_id"] != SHARE]
    report.events.append(event(SHARE, "request.cancelled", final=True))


@pytest.mark.parametrize(
    ("plant", "expected"),
    [
        (conflicting_final, "conflicting final events"),
        (second_contact, "2 contacts for one request"),
        (sharing_not_allowed, "not wanted or allowed"),
        (shared_twice, "started 2 times"),
        (shared_before_agent, "before an agent connected"),
        (started_without_sharing, "Connect never started it"),
        (no_final, "no final event"),
        (poison_reached_connect, "rejected request reached Connect"),
        (poison_got_received, "not just request.rejected"),
        (valid_in_dlq, "dead-letter queue differs"),
        (left_in_flight, "request queue not empty"),
        (unclean_exit, "exit status 1 after SIGTERM"),
        (token_in_log, "connection token(s) in the log"),
        (crash_in_log, "not a JSON log line"),
        (wrong_outcome, "final screen_sharing.started"),
        (agent_after_let_go, "an agent reached it after the orchestrator let go"),
        (stopped_with_agent, "stopped after a DescribeContact showed its agent"),
        (cancelled_unasked, "final request.cancelled"),
    ],
)
def test_each_broken_promise_is_reported(tmp_path: Path, plant: Plant, expected: str) -> None:
    report = clean_report(tmp_path)
    plant(report)
    problems = check(report)
    assert any(expected in p for p in problems), problems


def test_an_agent_who_connected_between_the_confirmation_and_the_stop_is_the_race_not_a_fault(
    tmp_path: Path,
) -> None:
    report = clean_report(tmp_path)
    # The confirming DescribeContact answered at 99.99, the agent came at 100.0, the stop 100.02.
    report.contacts[0].update(StoppedWithAgent=True, LastDescribedAt=99.99, StoppedAt=100.02)

    assert check(report) == []
    (race,) = cut_off(report.contacts)
    assert (race.seen_before_stop, round(race.window_s or 0.0, 3)) == (False, 0.03)
