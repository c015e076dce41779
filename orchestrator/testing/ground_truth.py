"""What really happened to the contacts the orchestrator let go of, from the emulator's ground
truth joined with the requests' final events.

A contact the orchestrator let go of (its request ended without an agent: timed out, failed,
cancelled, ...) that an agent reached *after* that final event is the harm issue 20 is about:
an agent answering a customer who was told the call failed, or who has gone.
`reached_agent_after_let_go` lists them; the emulator's `StoppedWithAgent`
(`EmulatorControl.stopped_with_agent`) lists the opposite harm, a stop that cut off an agent.

A stop is confirmed by a DescribeContact right before it; an agent who connects between that
answer and the stop is the one race no caller can close (`cut_off`: the `window_s` it happened
in). A stop after a DescribeContact had shown the agent (`seen_before_stop`) is a fault.
Tests, the chaos soak, the demo and the benchmarks count them all: with
`[watch] on_timeout = "stop"`, no contact is reached after it was let go, and no stop follows a
DescribeContact that showed an agent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.request import client_token

#: Final events that mean an agent has the contact: nothing was let go of.
_WITH_AGENT = frozenset(
    {EventType.SCREEN_SHARING_STARTED.value, EventType.SCREEN_SHARING_SKIPPED.value}
)


def _final_times(
    events: Iterable[LifecycleEvent | Mapping[str, Any]],
) -> dict[str, tuple[str, float]]:
    """Each request's first final event: (type, epoch seconds)."""
    out: dict[str, tuple[str, float]] = {}
    for event in events:
        if isinstance(event, LifecycleEvent):
            if event.final:
                out.setdefault(event.request_id, (event.type.value, event.time.timestamp()))
        elif event.get("final"):
            when = datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00")).timestamp()
            out.setdefault(str(event["request_id"]), (str(event["type"]), when))
    return out


def reached_agent_after_let_go(
    events: Iterable[LifecycleEvent | Mapping[str, Any]], contacts: Iterable[Mapping[str, Any]]
) -> list[str]:
    """The contacts (ids) an agent reached after their request's final event said no agent had
    them. `events` as emitted (or their JSON form), `contacts` the emulator's ground truth
    (`EmulatorControl.contacts()`), matched by the start's ClientToken."""
    by_token = {str(c["ClientToken"]): c for c in contacts}
    late = []
    for request_id, (type_, when) in _final_times(events).items():
        if type_ in _WITH_AGENT:
            continue
        contact = by_token.get(client_token(request_id, "start"))
        if contact is None or contact["ConnectedToAgentAt"] is None:
            continue
        if float(contact["ConnectedToAgentAt"]) > when:
            late.append(str(contact["ContactId"]))
    return sorted(late)


@dataclass(frozen=True)
class CutOff:
    """A contact StopContact ended while an agent had it."""

    contact_id: str
    #: Whether a DescribeContact had shown the agent before the stop (a fault, not a race).
    seen_before_stop: bool
    #: From the contact's last DescribeContact answer to the stop, seconds (None: never
    #: described).
    window_s: float | None


def cut_off(contacts: Iterable[Mapping[str, Any]]) -> list[CutOff]:
    """The contacts a stop cut off an agent from, from the emulator's ground truth
    (`EmulatorControl.contacts()`)."""
    out = []
    for c in contacts:
        if not c["StoppedWithAgent"]:
            continue
        described, connected = c["LastDescribedAt"], c["ConnectedToAgentAt"]
        seen = described is not None and connected is not None and connected <= described
        window = None if described is None else float(c["StoppedAt"]) - float(described)
        out.append(CutOff(str(c["ContactId"]), seen, window))
    return out
