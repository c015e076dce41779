"""Connect contact events as the engine sees them: what happened to which contact.

The consumer (`daemon/contact_events.py`) reads EventBridge records from SQS and turns each into
a `ContactEvent`; whoever delivers it (`ContactEventSink`) wakes the watch of that contact. In
fleet mode the sink publishes to Redis and every worker delivers to its own watches. An event
never decides an outcome: the woken watch confirms with DescribeContact, whose timestamps stay
the single source of every verdict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from orchestrator import tracing
from orchestrator.clock import Clock, SystemClock
from orchestrator.engine import traces
from orchestrator.engine.doorbells import ContactNotifier, Expiring
from orchestrator.metrics import Metrics
from orchestrator.tracing import AttributeValue, SpanKind

log = structlog.get_logger("orchestrator.engine.contact_events")


@dataclass(frozen=True)
class ContactEvent:
    """One contact event, reduced to what the watch needs.

    `event_type` is Connect's `detail.eventType` as sent (CONNECTED_TO_AGENT, DISCONNECTED, ...);
    unknown types are kept, not refused. `event_id` is the EventBridge envelope's `id`, used to
    drop duplicates.
    """

    event_id: str
    contact_id: str
    event_type: str
    #: The envelope's `time`, ISO-8601 as sent (informational; never used for a verdict).
    time: str | None = None
    instance_arn: str | None = None
    #: Where the contact waits, from `detail.queueInfo` (the queue id, the last part of
    #: `queueArn`, as DescribeContact names it; `enqueueTimestamp` as epoch seconds): tells the
    #: watch where the contact stands in its queue before any poll does. None when absent or a
    #: placeholder.
    queue_id: str | None = None
    enqueued_at: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ContactEvent:
        """Read `to_json`'s form; fields a newer or older replica adds or lacks are ignored."""
        data = json.loads(text)
        enqueued_at = data.get("enqueued_at")
        return cls(
            event_id=str(data["event_id"]),
            contact_id=str(data["contact_id"]),
            event_type=str(data["event_type"]),
            time=data.get("time"),
            instance_arn=data.get("instance_arn"),
            queue_id=_text(data.get("queue_id")),
            enqueued_at=float(enqueued_at) if isinstance(enqueued_at, int | float) else None,
        )


class ContactEventSink(Protocol):
    """Where parsed contact events go: the local watches, or the fleet (which then delivers to
    every worker's local watches)."""

    async def deliver(self, event: ContactEvent) -> None: ...


# -- parsing ---------------------------------------------------------------------------------

#: The envelope's `detail-type` of Connect's contact events (the docs are being rebranded).
DETAIL_TYPES = frozenset({"Amazon Connect Contact Event", "Connect Customer Contact Event"})


class NotAContactEvent(ValueError):
    """A body that is not a Connect contact event (junk, another event type, a test message)."""


def _get(data: Mapping[str, Any], name: str) -> Any:
    """`data[name]` in camelCase or PascalCase (AWS's own samples mix both)."""
    if name in data:
        return data[name]
    return data.get(name[:1].upper() + name[1:])


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


#: Timestamps before this (2001-09-09) are placeholders such as `1970-01-01T00:00:00.001Z`.
_PLACEHOLDER_BEFORE = 1_000_000_000.0


def _timestamp(value: Any) -> float | None:
    """Epoch seconds of an ISO-8601 event timestamp; None if absent, unreadable or a placeholder."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    epoch = moment.timestamp()
    return epoch if epoch >= _PLACEHOLDER_BEFORE else None


def _placement(detail: Mapping[str, Any]) -> tuple[str | None, float | None]:
    """(queue id, enqueue time) from `detail.queueInfo`, or Nones."""
    info = _get(detail, "queueInfo")
    if not isinstance(info, dict):
        return None, None
    arn = _text(_get(info, "queueArn")) or ""
    queue_id = arn.rpartition("/queue/")[2] if "/queue/" in arn else None
    enqueued_at = _timestamp(_get(info, "enqueueTimestamp"))
    if not queue_id or enqueued_at is None:
        return None, None
    return queue_id, enqueued_at


def parse_contact_event(body: str | bytes) -> ContactEvent:
    """Read one queue body: the EventBridge envelope as an EventBridge -> SQS rule sends it, or
    the same envelope wrapped by SNS (`Type: Notification`, the envelope as `Message` string).

    Only `detail.eventType` says what happened; unknown event types and fields are kept or
    ignored, never refused. Raises `NotAContactEvent` for anything else.
    """
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise NotAContactEvent(f"not JSON: {error}") from None
    if isinstance(data, dict) and data.get("Type") == "Notification" and "Message" in data:
        message = data["Message"]
        try:
            data = json.loads(message) if isinstance(message, str) else message
        except ValueError as error:
            raise NotAContactEvent(f"SNS Message is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise NotAContactEvent(f"not a JSON object: {type(data).__name__}")
    detail_type = _get(data, "detail-type") or data.get("DetailType")
    if detail_type not in DETAIL_TYPES:
        raise NotAContactEvent(f"detail-type {str(detail_type)[:80]!r} is not a contact event")
    detail = _get(data, "detail")
    if not isinstance(detail, dict):
        raise NotAContactEvent("no detail object")
    event_id = _text(_get(data, "id"))
    contact_id = _text(_get(detail, "contactId"))
    event_type = _text(_get(detail, "eventType"))
    missing = [
        name
        for name, value in (("id", event_id), ("contactId", contact_id), ("eventType", event_type))
        if value is None
    ]
    if event_id is None or contact_id is None or event_type is None:
        raise NotAContactEvent(f"missing {', '.join(missing)}")
    queue_id, enqueued_at = _placement(detail)
    return ContactEvent(
        event_id=event_id,
        contact_id=contact_id,
        event_type=event_type.upper(),
        time=_text(_get(data, "time")),
        instance_arn=_text(_get(detail, "instanceArn")),
        queue_id=queue_id,
        enqueued_at=enqueued_at,
    )


def _span_attributes(event: ContactEvent) -> dict[str, AttributeValue]:
    return {
        "messaging.operation.type": "process",
        "messaging.message.id": event.event_id,
        "aws.connect.contact_id": event.contact_id,
        "aws.connect.contact_event_type": event.event_type,
    }


# -- local delivery --------------------------------------------------------------------------

#: Event types that wake a watch: the two that can end it (COMPLETED follows DISCONNECTED, so it
#: stands in for a lost DISCONNECTED). The others (INITIATED, QUEUED, CONTACT_DATA_UPDATED, ...,
#: and types Connect adds later) are counted and dropped: a poll would only find "still waiting".
WAKING_TYPES = frozenset({"CONNECTED_TO_AGENT", "DISCONNECTED", "COMPLETED"})
#: The event type whose `queueInfo` says where a contact waits (see `LocalContactEvents`).
QUEUED = "QUEUED"


class LocalContactEvents:
    """Delivers contact events to the watches of this process (a `ContactEventSink`).

    * Duplicates (the same EventBridge `id` within `dedup_ttl_s`) are dropped.
    * CONNECTED_TO_AGENT, DISCONNECTED and COMPLETED ring the doorbell of the contact's watch,
      marked as an event: the watch confirms with ONE DescribeContact at top priority. The event
      itself decides nothing; if that poll finds the contact still waiting, the schedule goes on.
    * QUEUED events place the contact in its watch's queue frontier (queue, enqueue time), so
      that a younger contact's connection can wake it: see `frontier.py`.
    * For a contact nobody watches yet, the notifier keeps both for its watch to come, if it was
      built to (`doorbells.EarlyEvents`).
    """

    def __init__(
        self,
        notifier: ContactNotifier,
        *,
        metrics: Metrics,
        clock: Clock | None = None,
        dedup_ttl_s: float = 900.0,
        dedup_limit: int = 100_000,
    ) -> None:
        self._notifier = notifier
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self._seen: Expiring[bool] = Expiring(dedup_ttl_s, dedup_limit)

    async def deliver(self, event: ContactEvent) -> None:
        # Traced when the contact's request runs here: a span of its own trace, linked to the
        # request's process span (other replicas of a fleet hear the same event: no span there).
        link = traces.contact_link(event.contact_id)
        if not link:
            self._deliver(event)
            return
        with tracing.span(
            "contact_event process",
            kind=SpanKind.CONSUMER,
            root=True,
            links=link,
            attributes=_span_attributes(event),
        ):
            self._deliver(event)

    def _deliver(self, event: ContactEvent) -> None:
        now = self._clock.monotonic()
        self._seen.expire(now)
        self._metrics.contact_events.labels(event.event_type).inc()
        if event.event_id in self._seen:
            self._count("duplicate")
            return
        self._seen.add(event.event_id, now, True)
        queue_id, enqueued_at = event.queue_id, event.enqueued_at
        if event.event_type == QUEUED and queue_id is not None and enqueued_at is not None:
            self._notifier.place(event.contact_id, queue_id, enqueued_at)
        if event.event_type in WAKING_TYPES and self._notifier.ring(
            event.contact_id, by_event=True
        ):
            self._count("matched")
            log.debug(
                "contact_event.matched", contact_id=event.contact_id, event_type=event.event_type
            )

    def _count(self, outcome: str) -> None:
        self._metrics.contact_event_outcomes.labels(outcome).inc()
