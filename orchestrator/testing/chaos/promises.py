"""The promises a chaos run must keep, checked on its `ChaosReport`: one final outcome per request
that agrees with what it asked for, no second contact for a request, screen sharing only where
wanted, allowed and connected, rejected input in the dead-letter queue and nowhere else, no
contact an agent reached after the orchestrator let go of it and no stop of a contact an agent
had, workers that exit cleanly after SIGTERM, and no connection token in any log."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from orchestrator.engine.events import FINAL_TYPES, REPEATED_TYPES
from orchestrator.engine.request import client_token
from orchestrator.testing.chaos.plan import Planned
from orchestrator.testing.chaos.report import ChaosReport, outcome_of
from orchestrator.testing.ground_truth import cut_off, reached_agent_after_let_go

FINALS = frozenset(t.value for t in FINAL_TYPES)


def check(report: ChaosReport) -> list[str]:
    """Every way the run broke a promise (empty when it kept them all)."""
    problems: list[str] = []
    valid = {v.request_id: v for v in report.valid}
    poison_ids = {p.request_id for p in report.poison if p.request_id is not None}
    problems += _check_events(report, valid, poison_ids)
    problems += _check_contacts(report, valid, poison_ids)
    problems += _check_let_go(report)
    problems += _check_queues(report)
    problems += _check_workers(report)
    return problems


def _check_events(
    report: ChaosReport, valid: dict[str, Planned], poison_ids: set[str]
) -> list[str]:
    problems = []
    finals: dict[str, set[str]] = {}
    for event in report.events:
        rid, kind = event["request_id"], event["type"]
        repeated = kind in REPEATED_TYPES and event["id"].startswith(f"{rid}:{kind}:")
        if event["id"] != f"{rid}:{kind}" and not repeated:
            problems.append(f"event id {event['id']!r} is not RequestId:type")
        if event["final"] != (kind in FINALS):
            problems.append(f"{event['id']}: final={event['final']}")
        if rid not in valid and rid not in poison_ids:
            problems.append(f"an event for a request nobody sent: {event['id']}")
        if event["final"]:
            finals.setdefault(rid, set()).add(kind)
    problems += [
        f"{rid}: conflicting final events {sorted(kinds)}"
        for rid, kinds in finals.items()
        if len(kinds) > 1
    ]
    problems += [f"{rid}: no final event" for rid in valid if rid not in finals]
    for rid in poison_ids:
        kinds = {e["type"] for e in report.events if e["request_id"] == rid}
        if kinds != {"request.rejected"}:
            problems.append(f"poison {rid}: events {sorted(kinds)}, not just request.rejected")
    return problems + _check_outcomes(report, valid)


#: The final outcomes each kind of request may reach, besides those any request may.
_ALLOWED = {
    "share": {"screen_sharing.started", "screen_sharing.skipped (contact_ended)"},
    "declines": {"screen_sharing.skipped (not_requested)"},
    "not-allowed": {"screen_sharing.skipped (capability_not_allowed)"},
}
_ALWAYS = {"contact.disconnected", "contact.timed_out", "request.failed"}


def _check_outcomes(report: ChaosReport, valid: dict[str, Planned]) -> list[str]:
    """The final outcome agrees with what the request asked for (`request.cancelled` only
    for a request that was cancelled)."""
    problems = []
    cancelled = set(report.cancelled)
    for rid, event in report.final_events().items():
        allowed = _ALLOWED[valid[rid].kind] | _ALWAYS if rid in valid else set()
        if rid in cancelled:
            allowed |= {"request.cancelled"}
        if rid in valid and outcome_of(event) not in allowed:
            problems.append(f"{rid} ({valid[rid].kind}): final {outcome_of(event)}")
    return problems


def _check_let_go(report: ChaosReport) -> list[str]:
    """No agent reached a contact after its request's final event said none had it; no stop
    followed a DescribeContact that showed an agent (the emulator's ground truth; an agent who
    connects between the confirmation and the stop is the race no caller can close)."""
    late = reached_agent_after_let_go(report.events, report.contacts)
    seen = [c.contact_id for c in cut_off(report.contacts) if c.seen_before_stop]
    return [f"contact {cid}: an agent reached it after the orchestrator let go" for cid in late] + [
        f"contact {cid}: stopped after a DescribeContact showed its agent" for cid in seen
    ]


def _check_contacts(
    report: ChaosReport, valid: dict[str, Planned], poison_ids: set[str]
) -> list[str]:
    problems = []
    by_token = {client_token(rid, "start"): rid for rid in valid}
    poison_tokens = {client_token(rid, "start") for rid in poison_ids}
    per_token = Counter(c["ClientToken"] for c in report.contacts)
    for token, count in per_token.items():
        if count > 1:
            problems.append(f"{by_token.get(token, token)}: {count} contacts for one request")
        if token in poison_tokens:
            problems.append(f"a rejected request reached Connect (token {token})")
        elif token not in by_token:
            problems.append(f"a contact for no request: token {token}")
    started: dict[str, set[str]] = {}
    for event in report.events:
        if event["type"] == "contact.started":
            started.setdefault(event["request_id"], set()).add(event["contact_id"])
    problems += [
        f"{rid}: contact.started but no contact in Connect"
        for rid in started
        if client_token(rid, "start") not in per_token
    ]
    finals = report.final_events()
    for contact in report.contacts:
        rid = by_token.get(contact["ClientToken"])
        if rid is None:
            continue
        ids = started.get(rid, set())
        if ids and ids != {contact["ContactId"]}:
            problems.append(f"{rid}: contact.started names {sorted(ids)}, Connect has one other")
        final = finals.get(rid, {}).get("type")
        problems += [f"{rid}: {p}" for p in _contact_problems(contact, valid[rid].kind, final)]
    return problems


def _contact_problems(contact: Mapping[str, Any], kind: str, final: str | None) -> list[str]:
    """Screen sharing only once, only where wanted, allowed and connected; finals that match."""
    problems = []
    starts = contact["ScreenSharingStarts"]
    connected = contact["ConnectedToAgentAt"]
    caps = contact["Request"].get("AllowedCapabilities") or {}
    may_share = all(
        (caps.get(side) or {}).get("ScreenShare") == "SEND" for side in ("Customer", "Agent")
    )
    if starts > 1:
        problems.append(f"screen sharing started {starts} times")
    if starts and (kind != "share" or not may_share):
        problems.append("screen sharing started though not wanted or allowed")
    shared = contact["ScreenSharingStartedAt"]
    if starts and (connected is None or shared is None or shared < connected):
        problems.append("screen sharing started before an agent connected")
    if starts and final == "screen_sharing.skipped":
        problems.append("final screen_sharing.skipped, yet sharing started")
    if not starts and final == "screen_sharing.started":
        problems.append("final screen_sharing.started, yet Connect never started it")
    if final == "contact.disconnected" and connected is not None:
        problems.append("final contact.disconnected, yet an agent connected")
    if final in {"screen_sharing.started", "screen_sharing.skipped"} and connected is None:
        problems.append(f"final {final} without an agent ever connecting")
    return problems


def _check_queues(report: ChaosReport) -> list[str]:
    problems = []
    if report.left_in_queue != (0, 0):
        problems.append(f"request queue not empty: (visible, in flight) = {report.left_in_queue}")
    expected = sorted(p.text for p in report.poison)
    if sorted(report.dead_letters) != expected:
        extra = Counter(report.dead_letters) - Counter(expected)
        missing = Counter(expected) - Counter(report.dead_letters)
        problems.append(
            f"dead-letter queue differs from the poison messages: "
            f"{sum(extra.values())} unexpected "
            f"({', '.join(b[:60] for b in extra)}), {sum(missing.values())} missing"
        )
    return problems


def _check_workers(report: ChaosReport) -> list[str]:
    problems = []
    for name, signalled, code in report.exits:
        if signalled == "SIGTERM" and code != 0:
            problems.append(f"{name}: exit status {code} after SIGTERM")
        if signalled is None:
            problems.append(f"{name}: was never stopped")
    secrets = [
        value
        for event in report.events
        if event["type"] == "contact.started"
        for value in _secret_values(event["data"])
    ]
    if not secrets:
        problems.append("no connection data in the events: the token check proves nothing")
    for path in report.worker_logs:
        text = path.read_text(errors="replace")
        lines = text.splitlines()
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError:
                if number == len(lines):  # a SIGKILL may cut the last line short
                    continue
                problems.append(f"{path.name}:{number}: not a JSON log line: {line[:120]}")
                continue
            if record.get("event") == "worker.unexpected_error":
                problems.append(f"{path.name}:{number}: {line[:200]}")
        leaked = [s for s in secrets if s in text]
        if leaked:
            problems.append(f"{path.name}: {len(leaked)} connection token(s) in the log")
    return problems


def _secret_values(data: Mapping[str, Any]) -> Iterator[str]:
    if isinstance(data.get("ParticipantToken"), str):
        yield data["ParticipantToken"]
    attendee = (data.get("ConnectionData") or {}).get("Attendee") or {}
    if isinstance(attendee.get("JoinToken"), str):
        yield attendee["JoinToken"]
