"""Lifecycle events: what the orchestrator says about each request, to logs and sinks.

Every event has a deterministic id, `RequestId:type`, so consumers can drop the duplicates that
at-least-once delivery produces; an event type that may come more than once per request carries a
third part, distinct per emission (`RequestId:contact.queue_position:N`, N increasing), or per
reason (`RequestId:request.waiting:capacity`). Exactly one event per request is final.

`contact.started` carries the connection data (ParticipantToken, Meeting, Attendee with its
JoinToken) the requester's app needs to join the call. Those secrets are held apart from the
event's public `data`: `to_dict()` leaves them out unless a sink is configured to carry them, so
they cannot reach a log by accident.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, PrivateAttr


class EventType(StrEnum):
    RECEIVED = "request.received"
    REJECTED = "request.rejected"
    STARTED = "contact.started"
    AGENT_CONNECTED = "contact.agent_connected"
    SCREEN_SHARING_STARTED = "screen_sharing.started"
    SCREEN_SHARING_SKIPPED = "screen_sharing.skipped"
    DISCONNECTED = "contact.disconnected"
    TIMED_OUT = "contact.timed_out"
    FAILED = "request.failed"
    EXPIRED = "request.expired"
    #: Non-final: the request will not start at once (`data.reason`: capacity, start_rate).
    WAITING = "request.waiting"
    #: Non-final: the customer's place in line (`data.position`, `estimated_wait_s`, ...).
    QUEUE_POSITION = "contact.queue_position"
    CANCELLED = "request.cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_TYPES


#: The types a request may get more than once: their ids carry a third part (`seq`).
REPEATED_TYPES = frozenset({EventType.WAITING, EventType.QUEUE_POSITION})

FINAL_TYPES = frozenset(
    {
        EventType.REJECTED,
        EventType.SCREEN_SHARING_STARTED,
        EventType.SCREEN_SHARING_SKIPPED,
        EventType.DISCONNECTED,
        EventType.TIMED_OUT,
        EventType.FAILED,
        EventType.EXPIRED,
        EventType.CANCELLED,
    }
)


class EventRecord(BaseModel):
    """The shape of an event as the sinks carry it (its type as text): what a consumer parses
    (`orchestrator.client.CallEvent`) and what the engine builds (`LifecycleEvent`)."""

    model_config = ConfigDict(frozen=True)

    id: str
    type: str
    time: datetime
    request_id: str
    contact_id: str | None = None
    instance_id: str | None = None
    final: bool
    data: dict[str, Any]
    #: The trace the request runs in (32 hex digits), None when the daemon does not trace.
    trace_id: str | None = None


class LifecycleEvent(EventRecord):
    """One event. Build them with `LifecycleEvent.create`."""

    type: EventType
    _secrets: dict[str, Any] = PrivateAttr(default_factory=dict)

    @classmethod
    def create(
        cls,
        type: EventType,
        request_id: str,
        *,
        contact_id: str | None = None,
        instance_id: str | None = None,
        data: dict[str, Any] | None = None,
        secrets: dict[str, Any] | None = None,
        now: datetime | None = None,
        seq: int | str | None = None,
        trace_id: str | None = None,
    ) -> LifecycleEvent:
        """`seq` tells apart the events of a type that may come more than once per request
        (`REPEATED_TYPES`)."""
        event = cls(
            id=f"{request_id}:{type.value}" + ("" if seq is None else f":{seq}"),
            type=type,
            time=now or datetime.now(UTC),
            request_id=request_id,
            contact_id=contact_id,
            instance_id=instance_id,
            final=type.final,
            data=data or {},
            trace_id=trace_id,
        )
        event._secrets = dict(secrets or {})
        return event

    @property
    def has_secrets(self) -> bool:
        return bool(self._secrets)

    def to_dict(self, *, include_connection_data: bool = False) -> dict[str, Any]:
        """The event as JSON-ready data; the connection data only when asked for."""
        out = self.model_dump(mode="json")
        out["time"] = (
            self.time.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
        if include_connection_data and self._secrets:
            out["data"] = {**out["data"], **self._secrets}
        return out

    def to_json(self, *, include_connection_data: bool = False) -> str:
        return json.dumps(
            self.to_dict(include_connection_data=include_connection_data), separators=(",", ":")
        )

    def __repr__(self) -> str:  # never shows secrets
        return f"LifecycleEvent(id={self.id!r}, contact_id={self.contact_id!r})"


@runtime_checkable
class EventSink(Protocol):
    """The port where lifecycle events leave the engine (the implementations live in `sinks/`).

    `publish` returns once every event is delivered, or raises `SinkError`."""

    name: str

    async def publish(self, events: Sequence[LifecycleEvent]) -> None: ...
