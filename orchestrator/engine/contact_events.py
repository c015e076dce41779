"""Connect contact events as the engine sees them: what happened to which contact.

The consumer (`daemon/contact_events.py`) reads EventBridge records from SQS and turns each into
a `ContactEvent`; whoever delivers it (`ContactEventSink`) wakes the watch of that contact. In
fleet mode the sink publishes to Redis and every worker delivers to its own watches. An event
never decides an outcome: the woken watch confirms with DescribeContact, whose timestamps stay
the single source of every verdict.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import structlog

from orchestrator.clock import Clock, SystemClock
from orchestrator.engine.doorbells import ContactNotifier
from orchestrator.metrics import Metrics

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


# -- local delivery --------------------------------------------------------------------------

#: Event types that wake a watch: the two that can end it (COMPLETED follows DISCONNECTED, so it
#: stands in for a lost DISCONNECTED). The others (INITIATED, QUEUED, CONTACT_DATA_UPDATED, ...,
#: and types Connect adds later) are counted and dropped: a poll would only find "still waiting".
WAKING_TYPES = frozenset({"CONNECTED_TO_AGENT", "DISCONNECTED", "COMPLETED"})
#: The event type whose `queueInfo` says where a contact waits (see `LocalContactEvents`).
QUEUED = "QUEUED"


V = TypeVar("V")


class _Expiring(Generic[V]):
    """Keys (each with a value) remembered for `ttl_s`, at most `limit` of them (the oldest go
    first)."""

    def __init__(self, ttl_s: float, limit: int) -> None:
        self._ttl_s = ttl_s
        self._limit = limit
        self._until: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def expire(self, now: float) -> list[str]:
        """Drop and return the keys whose time is up (and the oldest beyond the limit)."""
        gone: list[str] = []
        while self._until and (
            len(self._until) > self._limit or next(iter(self._until.values()))[0] <= now
        ):
            gone.append(self._until.popitem(last=False)[0])
        return gone

    def add(self, key: str, now: float, value: V) -> None:
        self._until[key] = (now + self._ttl_s, value)
        self._until.move_to_end(key)

    def pop(self, key: str, now: float) -> V | None:
        """The key's value, forgotten; None if it was not kept or its time is up."""
        kept = self._until.pop(key, None)
        return kept[1] if kept is not None and kept[0] > now else None

    def __contains__(self, key: str) -> bool:
        return key in self._until


class LocalContactEvents:
    """Delivers contact events to the watches of this process (a `ContactEventSink`).

    * Duplicates (the same EventBridge `id` within `dedup_ttl_s`) are dropped.
    * CONNECTED_TO_AGENT, DISCONNECTED and COMPLETED ring the doorbell of the contact's watch,
      marked as an event: the watch confirms with ONE DescribeContact at top priority. The event
      itself decides nothing; if that poll finds the contact still waiting, the schedule goes on.
    * QUEUED events place the contact in its watch's queue frontier (queue, enqueue time), so
      that a younger contact's connection can wake it: see `frontier.py`.
    * An event for a contact nobody watches yet (it can beat StartWebRTCContact's answer, or the
      watch's doorbell) is kept `early_ttl_s`; a watch that subscribes meanwhile polls at once.
      Kept events nobody claims are counted unmatched (foreign contacts: another worker's, or
      another application's on the same instance).
    """

    def __init__(
        self,
        notifier: ContactNotifier,
        *,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        dedup_ttl_s: float = 900.0,
        dedup_limit: int = 100_000,
        early_ttl_s: float = 30.0,
        early_limit: int = 10_000,
    ) -> None:
        self._notifier = notifier
        self._metrics = metrics or Metrics()
        self._clock = clock or SystemClock()
        self._seen: _Expiring[bool] = _Expiring(dedup_ttl_s, dedup_limit)
        self._early: _Expiring[bool] = _Expiring(early_ttl_s, early_limit)
        #: Where contacts nobody watches yet wait (queue, enqueue time; from QUEUED events).
        self._early_places: _Expiring[tuple[str, float]] = _Expiring(early_ttl_s, early_limit)
        notifier.early_events = self._claim

    async def deliver(self, event: ContactEvent) -> None:
        now = self._clock.monotonic()
        self._expire(now)
        self._metrics.contact_events.labels(event.event_type).inc()
        if event.event_id in self._seen:
            self._count("duplicate")
            return
        self._seen.add(event.event_id, now, True)
        if event.event_type == QUEUED:
            self._place(event, now)
        if event.event_type not in WAKING_TYPES:
            return
        if self._notifier.ring(event.contact_id, by_event=True):
            self._count("matched")
            log.debug(
                "contact_event.matched", contact_id=event.contact_id, event_type=event.event_type
            )
        else:
            self._early.add(event.contact_id, now, True)

    def _place(self, event: ContactEvent, now: float) -> None:
        """A QUEUED event says where the contact waits: its watch's queue frontier learns it
        before any poll, so a younger contact's connection can wake it (in a queue that serves
        oldest first, that catches a lost CONNECTED_TO_AGENT event at the next connection)."""
        if event.queue_id is None or event.enqueued_at is None:
            return
        if self._notifier.watches(event.contact_id):
            self._notifier.frontier.waiting(event.contact_id, event.queue_id, event.enqueued_at)
        else:
            self._early_places.add(event.contact_id, now, (event.queue_id, event.enqueued_at))

    def _claim(self, contact_id: str) -> bool:
        """Asked by a subscribing watch: did an event for `contact_id` arrive before it? (A
        QUEUED one places the contact in its queue frontier; a waking one makes it poll.)"""
        now = self._clock.monotonic()
        self._expire(now)
        place = self._early_places.pop(contact_id, now)
        if place is not None:
            self._notifier.frontier.waiting(contact_id, *place)
        if self._early.pop(contact_id, now):
            self._count("early")
            return True
        return False

    def _expire(self, now: float) -> None:
        self._seen.expire(now)
        for _ in self._early.expire(now):
            self._count("unmatched")
        self._early_places.expire(now)

    def _count(self, outcome: str) -> None:
        self._metrics.contact_event_outcomes.labels(outcome).inc()
