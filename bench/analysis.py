"""Figures computed from the emulator's ground truth, the same way for every implementation."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.engine.request import client_token
from orchestrator.testing.stats import distribution

OPERATIONS = ("StartWebRTCContact", "DescribeContact", "StartScreenSharing")


def operation_stats(stats: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Per operation: calls, successes, throttled (429s) and the throttled fraction of calls."""
    out: dict[str, dict[str, float]] = {}
    for op in OPERATIONS:
        s = stats.get("operations", {}).get(op, {})
        calls = int(s.get("calls", 0))
        throttled = int(s.get("throttled", 0))
        out[op] = {
            "calls": calls,
            "successes": int(s.get("successes", 0)),
            "throttled": throttled,
            "throttled_fraction": throttled / calls if calls else 0.0,
            "client_errors": int(s.get("client_errors", 0)),
            "concurrency_limited": int(s.get("concurrency_limited", 0)),
        }
    return out


def _delay(contact: Mapping[str, Any]) -> float:
    return float(contact["ScreenSharingStartedAt"]) - float(contact["ConnectedToAgentAt"])


def detection(contacts: list[dict[str, Any]], *, wave_s: float | None = None) -> dict[str, Any]:
    """Detection delay (ScreenSharingStartedAt - ConnectedToAgentAt) and polls per contact.

    With `wave_s`, the delays are also split between the contacts connected within `wave_s` of
    the first contact's creation (the agents' first wave: every agent free at once) and the
    rest (connected one by one as agents freed up)."""
    connected = [c for c in contacts if c.get("ConnectedToAgentAt") is not None]
    shared = [c for c in connected if c.get("ScreenSharingStartedAt") is not None]
    delays = [_delay(c) for c in shared]
    polls = [int(c.get("DescribeContactCalls", 0)) for c in contacts]
    waits = [c["ConnectedToAgentAt"] - c["CreatedAt"] for c in connected]
    phases: dict[str, Any] = {}
    if wave_s is not None and contacts:
        t0 = min(float(c["CreatedAt"]) for c in contacts)
        first = [c for c in shared if c["ConnectedToAgentAt"] - t0 < wave_s]
        later = [c for c in shared if c["ConnectedToAgentAt"] - t0 >= wave_s]
        phases = {
            "first_wave_s": distribution([_delay(c) for c in first]),
            "queued_s": distribution([_delay(c) for c in later]),
        }
    return {
        "contacts": len(contacts),
        "connected": len(connected),
        "screen_sharing_started": len(shared),
        #: An agent connected but screen sharing never started (the call ended first, or the
        #: implementation never noticed or gave up).
        "undetected": len(connected) - len(shared),
        "never_connected": len(contacts) - len(connected),
        "detection_delay_s": distribution(delays),
        "time_to_agent_s": distribution(waits),
        "describe_calls_per_contact": distribution([float(p) for p in polls]),
        "detection_by_phase": phases,
    }


def start_window(contacts: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """First and last CreatedAt, and their spread."""
    created = sorted(float(c["CreatedAt"]) for c in contacts)
    if not created:
        return {"first": math.nan, "last": math.nan, "spread_s": math.nan}
    return {"first": created[0], "last": created[-1], "spread_s": created[-1] - created[0]}


def quota_efficiency(starts: int, spread_s: float, rate: float, burst: float) -> float:
    """Achieved share of a token-bucket quota over the window in which the starts happened.

    A bucket of `rate`/s that starts full with `burst` tokens allows at most
    `burst + rate * T` calls in a window of T seconds, so `(starts - burst) / (rate * T)` is 1.0
    for a client that uses every token as soon as it exists, and lower for any idle time.
    """
    if spread_s <= 0 or starts <= burst:
        return math.nan
    return (starts - burst) / (rate * spread_s)


def match_requests(
    contacts: list[dict[str, Any]], request_ids: Iterable[str]
) -> tuple[dict[str, dict[str, Any]], int]:
    """Map request ids to their contacts through the derived ClientToken; also count contacts
    that belong to no request (duplicates would show up here)."""
    by_token = {c.get("ClientToken"): c for c in contacts}
    matched: dict[str, dict[str, Any]] = {}
    for rid in request_ids:
        contact = by_token.get(client_token(rid, "start"))
        if contact is not None:
            matched[rid] = contact
    return matched, len(contacts) - len(matched)
