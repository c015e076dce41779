"""What the client hands its caller: a call's events, parsed, and its errors.

A `CallEvent` is the JSON a sink carries (`engine.events.LifecycleEvent.to_json`), parsed: its
`type` is the event's own text, so a type this client does not know yet (a newer worker's) is kept
and handed on, never rejected; compare it with `EventType` members (`event.type ==
EventType.STARTED`), which are strings.
"""

from __future__ import annotations

import json

from pydantic import ConfigDict, ValidationError

from orchestrator.engine.events import EventRecord, EventType
from orchestrator.errors import OrchestratorError


class CallEvent(EventRecord):
    """One lifecycle event of one call, as the sinks carry it (fields a newer worker adds are
    ignored)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def parse(cls, body: str | bytes) -> CallEvent:
        """An event from a message body; `ValueError` when it is not one."""
        try:
            return cls.model_validate(json.loads(body))
        except (ValidationError, json.JSONDecodeError, TypeError) as exc:
            raise ValueError(f"not a lifecycle event: {_first_line(exc)}") from None

    @property
    def known_type(self) -> EventType | None:
        """The type as this client's `EventType`, or None for a type it does not know."""
        try:
            return EventType(self.type)
        except ValueError:
            return None

    def __repr__(self) -> str:  # never shows the connection data
        return f"CallEvent(id={self.id!r}, contact_id={self.contact_id!r}, final={self.final})"

    __str__ = __repr__


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class ClientError(OrchestratorError):
    """An SQS call of the client failed; the message is one line naming the call and the queue."""


class CallEnded(OrchestratorError):
    """The call ended (`event`, its final event) before the stage that was awaited."""

    def __init__(self, stage: str, event: CallEvent) -> None:
        detail = _detail(event)
        super().__init__(f"call {event.request_id} ended with {event.type}{detail} before {stage}")
        self.stage = stage
        self.event = event


def _detail(event: CallEvent) -> str:
    data = event.data
    if "errors" in data and isinstance(data["errors"], list) and data["errors"]:
        first = data["errors"][0]
        if isinstance(first, dict):
            return f" ({first.get('field')}: {first.get('message')})"
    for key in ("error_code", "reason", "stage", "limit"):
        if data.get(key) is not None:
            return f" ({key} {data[key]})"
    return ""


class CallTimeout(TimeoutError):
    """An awaited stage of a call did not arrive in time; `stage` names it."""

    def __init__(self, request_id: str, stage: str, timeout_s: float, last: str | None) -> None:
        seen = f"; last event {last}" if last else "; no event yet"
        super().__init__(f"call {request_id}: {stage} did not arrive within {timeout_s:g} s{seen}")
        self.request_id = request_id
        self.stage = stage
        self.timeout_s = timeout_s
        self.last_event_type = last
