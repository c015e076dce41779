"""Trace context on SQS messages, both ways (messaging semantic conventions, `aws_sqs`).

In: a message's W3C `traceparent`/`tracestate` message attributes, else its `AWSTraceHeader`
system attribute (X-Ray), is the producer's context (`message_context`); ReceiveMessage asks for
both (`calls.WORKER_ATTRIBUTES`, `calls.TRACE_ATTRIBUTES`). A `receive` span links to each
received message's context (`received`).

Out: `trace_attributes()` is the current span's context as message attributes, for whatever
sends a request (`orchestrator enqueue`, the client) or an event.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from orchestrator import tracing
from orchestrator.sqs.messages import QueueMessage, string_attributes
from orchestrator.tracing import AttributeValue, RemoteContext, SpanKind

#: `messaging.system` of every SQS span.
SYSTEM = "aws_sqs"


def _string(attributes: Mapping[str, Any], name: str) -> str | None:
    value = attributes.get(name)
    if isinstance(value, Mapping):
        text = value.get("StringValue")
        return text if isinstance(text, str) else None
    return None


def message_context(message: QueueMessage) -> RemoteContext | None:
    """The producer's context: `traceparent` (with `tracestate`) wins, else `AWSTraceHeader`."""
    attributes = message.attributes
    context = tracing.parse_traceparent(
        _string(attributes, "traceparent"), _string(attributes, "tracestate")
    )
    return context or tracing.parse_xray(message.trace_header)


def queue_name(queue_url: str) -> str:
    """`messaging.destination.name`: the last part of the queue URL."""
    return queue_url.rstrip("/").rpartition("/")[2]


def message_attributes(message: QueueMessage, queue_url: str | None) -> dict[str, AttributeValue]:
    """A received message's attributes on its `process` span."""
    out: dict[str, AttributeValue] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.message.id": message.message_id,
        "messaging.sqs.receive_count": message.receive_count,
    }
    if queue_url:
        out["messaging.destination.name"] = queue_name(queue_url)
    if message.group_id:
        out["messaging.aws.sqs.message_group_id"] = message.group_id
    return out


def received(messages: Sequence[QueueMessage], queue_url: str, *, start_ns: int) -> None:
    """One `receive` span (from `start_ns` to now) for a ReceiveMessage that returned messages,
    linked to each message's producer context. An empty long poll leaves no span."""
    if not messages or not tracing.enabled():
        return
    links = [c for c in map(message_context, messages) if c is not None]
    name = queue_name(queue_url)
    with tracing.span(
        f"receive {name}",
        kind=SpanKind.CLIENT,
        root=True,
        links=links,
        start_ns=start_ns,
        attributes={
            "messaging.system": SYSTEM,
            "messaging.operation.type": "receive",
            "messaging.operation.name": "ReceiveMessage",
            "messaging.destination.name": name,
            "messaging.batch.message_count": len(messages),
        },
    ):
        pass


def now_ns() -> int:
    """A span's start time, taken before a call whose span is decided after it."""
    return time.time_ns()


def trace_attributes() -> dict[str, Any]:
    """The current span's `traceparent` (and `tracestate`) as SQS message attributes; empty when
    not tracing."""
    return string_attributes(tracing.inject({}))


def created(queue_url: str, *, request_id: str | None = None) -> dict[str, Any]:
    """A `create` span for one message about to be sent to `queue_url`, and its context as the
    message's attributes (the message's creation context, which the worker's `process` span
    continues). Empty when not tracing."""
    if not tracing.enabled():
        return {}
    attributes: dict[str, AttributeValue] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "create",
        "messaging.destination.name": queue_name(queue_url),
    }
    if request_id:
        attributes["messaging.message.conversation_id"] = request_id
    with tracing.span(
        f"create {queue_name(queue_url)}", kind=SpanKind.PRODUCER, attributes=attributes
    ):
        return trace_attributes()


def sending(queue_url: str, count: int) -> AbstractContextManager[tracing.Span]:
    """The `send` span around sending `count` messages to `queue_url`."""
    return tracing.span(
        f"send {queue_name(queue_url)}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.destination.name": queue_name(queue_url),
            "messaging.batch.message_count": count,
        },
    )
