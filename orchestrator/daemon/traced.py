"""One `process` span per received message, for its whole lifecycle (messaging semantic
conventions): a child of the producer's context when the message carries one (`traceparent`,
else `AWSTraceHeader`), else the root of a new trace. Everything the lifecycle does (Connect
calls, waits, sink publishes, log lines) happens inside it; the lifecycle adds the request's
attributes and events (`engine/traces.py`). When it ends, the contacts it registered for
contact-event links are forgotten.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from orchestrator import tracing
from orchestrator.daemon.leases import Lease
from orchestrator.sqs import trace_context
from orchestrator.tracing import SpanKind


async def processing(
    handle: Callable[[Lease], Awaitable[None]], lease: Lease, queue_url: str | None
) -> None:
    """`await handle(lease)` inside the message's `process` span."""
    if not tracing.enabled():
        await handle(lease)
        return
    message = lease.message
    producer = trace_context.message_context(message)
    name = "process" if not queue_url else f"process {trace_context.queue_name(queue_url)}"
    with tracing.span(
        name,
        kind=SpanKind.CONSUMER,
        parent=producer,
        root=producer is None,
        attributes=trace_context.message_attributes(message, queue_url),
    ):
        try:
            await handle(lease)
        finally:
            tracing.release()
