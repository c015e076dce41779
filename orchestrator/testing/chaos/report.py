"""What a chaos run left behind (`ChaosReport`): the events, Connect's contacts, the queues, the
workers' exits, and the figures and text printed from them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.testing.chaos.plan import ChaosPlan, Planned
from orchestrator.testing.poison import Poison
from orchestrator.testing.queues import first_finals


def outcome_of(event: Mapping[str, Any]) -> str:
    """A final event's type, with the reason when screen sharing was skipped."""
    if event["type"] == "screen_sharing.skipped":
        return f"screen_sharing.skipped ({event['data'].get('reason')})"
    return str(event["type"])


@dataclass
class ChaosReport:
    plan: ChaosPlan
    valid: list[Planned]
    poison: list[Poison]
    #: The valid requests a cancel was sent for.
    cancelled: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    contacts: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    dead_letters: list[str] = field(default_factory=list)
    left_in_queue: tuple[int, int] = (0, 0)
    timeline: list[str] = field(default_factory=list)
    workers_started: int = 0
    kills: int = 0
    graceful_stops: int = 0
    #: (worker, signal sent or None, exit code)
    exits: list[tuple[str, str | None, int | None]] = field(default_factory=list)
    worker_logs: list[Path] = field(default_factory=list)
    drain_s: float = 0.0
    completed: bool = False
    problems: list[str] = field(default_factory=list)

    # -- figures -------------------------------------------------------------------------------

    def final_events(self) -> dict[str, Mapping[str, Any]]:
        """Each request's first final event."""
        return first_finals(self.events)

    def outcomes(self) -> Counter[str]:
        valid = {v.request_id for v in self.valid}
        return Counter(
            outcome_of(event) for rid, event in self.final_events().items() if rid in valid
        )

    def redeliveries(self) -> int:
        """Valid requests' deliveries beyond the first that reached `request.received`."""
        received = Counter(e["request_id"] for e in self.events if e["type"] == "request.received")
        return sum(n - 1 for n in received.values())

    def duplicates(self) -> int:
        return len(self.events) - len({e["id"] for e in self.events})

    def operation_totals(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for op in self.stats.get("operations", {}).values():
            totals.update(op)
        return dict(totals)

    def render(self) -> str:
        totals = self.operation_totals()
        readable = sum(p.request_id is not None for p in self.poison)
        lines = [
            f"chaos soak, seed {self.plan.seed}: "
            + ("completed" if self.completed else "DID NOT COMPLETE"),
            f"  requests           {len(self.valid)} valid + {len(self.poison)} poison "
            f"({readable} with a readable RequestId)",
            f"  workers            {self.plan.workers} at a time, {self.workers_started} started, "
            f"{self.kills} SIGKILLed, {self.graceful_stops} SIGTERMed (graceful drain)",
            f"  time to drain      {self.drain_s:.1f} s",
            "  outcomes           "
            + ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes().items())),
            f"  redeliveries       {self.redeliveries()} (valid requests received again)",
            f"  cancels            {len(self.cancelled)} sent, "
            f"{self.outcomes()['request.cancelled']} request.cancelled, "
            f"{sum(bool(c['StoppedAt']) for c in self.contacts)} contacts stopped",
            f"  events             {len(self.events)} read, "
            f"{len({e['id'] for e in self.events})} distinct ids, "
            f"{self.duplicates()} duplicates suppressed",
            f"  Connect calls      {totals.get('calls', 0)}: "
            f"{totals.get('throttled', 0) + totals.get('concurrency_limited', 0)} x 429 "
            f"({totals.get('concurrency_limited', 0)} at the concurrency cap), "
            f"{totals.get('faults', 0) - totals.get('dropped', 0)} x 5xx, "
            f"{totals.get('dropped', 0)} dropped connections",
            f"  contacts           {len(self.contacts)} in Connect, "
            f"{sum(c['ScreenSharingStarts'] for c in self.contacts)} screen-sharing starts",
            f"  dead-letter queue  {len(self.dead_letters)} message(s)",
        ]
        for operation, counts in sorted(self.stats.get("operations", {}).items()):
            lines.append(
                f"    {operation:<19}"
                + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "calls")
                + f" (of {counts.get('calls', 0)})"
            )
        lines += [f"  chaos              {entry}" for entry in self.timeline]
        if self.problems:
            lines.append(f"  PROBLEMS ({len(self.problems)}):")
            lines += [f"    - {p}" for p in self.problems[:50]]
        return "\n".join(lines)
