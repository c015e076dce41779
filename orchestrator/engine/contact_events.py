"""Connect contact events as the engine sees them: what happened to which contact.

The consumer (`daemon/contact_events.py`) reads EventBridge records from SQS and turns each into
a `ContactEvent`; whoever delivers it (`ContactEventSink`) wakes the watch of that contact. In
fleet mode the sink publishes to Redis and every worker delivers to its own watches. An event
never decides an outcome: the woken watch confirms with DescribeContact, whose timestamps stay
the single source of every verdict.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Protocol


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ContactEvent:
        data = json.loads(text)
        return cls(
            event_id=str(data["event_id"]),
            contact_id=str(data["contact_id"]),
            event_type=str(data["event_type"]),
            time=data.get("time"),
            instance_arn=data.get("instance_arn"),
        )


class ContactEventSink(Protocol):
    """Where parsed contact events go: the local watches, or the fleet (which then delivers to
    every worker's local watches)."""

    async def deliver(self, event: ContactEvent) -> None: ...
