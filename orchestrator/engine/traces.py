"""What a request's lifecycle tells its trace: each lifecycle event as a span event on the
request's `process` span, and the span's attributes as they become known (request id as the
messaging conversation id, instance, contact, outcome). A started contact is remembered, so
that its contact events (`contact_events.py`) link to the span; the worker's `process` span
forgets it when it ends.
"""

from __future__ import annotations

from orchestrator import tracing
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.tracing import AttributeValue

#: The span attributes of a request (the messaging conventions' conversation id is the request id).
REQUEST_ID = "messaging.message.conversation_id"
INSTANCE_ID = "aws.connect.instance_id"
CONTACT_ID = "aws.connect.contact_id"
OUTCOME = "orchestrator.outcome"


def record(event: LifecycleEvent) -> None:
    """Put `event` on the current span (the request's `process` span)."""
    span = tracing.current()
    if not span.is_recording():
        return
    attributes: dict[str, AttributeValue] = {REQUEST_ID: event.request_id}
    if event.instance_id:
        attributes[INSTANCE_ID] = event.instance_id
    if event.contact_id:
        attributes[CONTACT_ID] = event.contact_id
    span.add_event(event.type.value, {"orchestrator.event_id": event.id, **attributes})
    if event.final:
        attributes[OUTCOME] = event.type.value
    span.set_attributes(attributes)
    if event.type is EventType.STARTED and event.contact_id:
        tracing.remember(event.contact_id)


def contact_link(contact_id: str) -> list[tracing.RemoteContext]:
    """The span of the request that started `contact_id`, to link to (none if unknown here)."""
    found = tracing.recall(contact_id)
    return [] if found is None else [found]
