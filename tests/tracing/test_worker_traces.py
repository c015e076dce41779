"""A real worker (emulator, local SQS) traced with the SDK's in-memory exporter: the producer's
trace continues through the lifecycle and every Connect call; AWSTraceHeader is honoured; the
events carry the trace id; contact events link to the request's span; log lines carry the ids."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from orchestrator import tracing
from orchestrator.connect.operations import Operation, Quota
from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.enqueue import enqueue
from orchestrator.daemon.logs import configure_logging
from orchestrator.engine.events import EventType
from orchestrator.sinks import MemorySink
from orchestrator.sqs import receive
from orchestrator.testing.emulator import Emulator
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.support import create_queue, create_queue_with_dlq, eventually, request_body
from tests.support import settings_for as worker_settings
from tests.tracing.conftest import Spans, events_emulator

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(90)

PRODUCER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01"
XRAY_ROOT = "1-5759e988-bd862e3fe1be46a994272793"
XRAY_TRACE = "5759e988bd862e3fe1be46a994272793"
XRAY_PARENT = "53995c3f42cd8ad8"


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


async def _send(
    sqs: SQSClient,
    queue: str,
    body: str,
    *,
    traceparent: str | None = None,
    xray: str | None = None,
) -> None:
    extra: dict[str, Any] = {}
    if traceparent:
        extra["MessageAttributes"] = {"traceparent": _string(traceparent)}
    if xray:
        extra["MessageSystemAttributes"] = {"AWSTraceHeader": _string(xray)}
    await sqs.send_message(QueueUrl=queue, MessageBody=body, **extra)


def _process_span(spans: Spans, request_id: str) -> ReadableSpan:
    found = [
        s
        for s in spans.named("process")
        if s.attributes and s.attributes.get("messaging.message.conversation_id") == request_id
    ]
    assert len(found) == 1, [s.name for s in spans.all()]
    return found[0]


def _children(spans: Spans, parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    return [s for s in spans.all() if s.parent is not None and s.parent == parent.context]


async def _drain(
    emulator: Emulator, sqs_server: LocalSqsServer, queue: str, **sections: Any
) -> MemorySink:
    sink = MemorySink()
    settings = worker_settings(emulator.url, sqs_server.url, queue, **sections)
    async with open_worker(settings, extra_sinks=[sink]) as worker:
        await worker.run(drain=True)
    return sink


async def test_a_producers_trace_continues_through_the_lifecycle_and_every_connect_call(
    spans: Spans, emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    events_queue = await create_queue(sqs_client, "traced-events")
    await _send(sqs_client, queue, request_body("traced"), traceparent=TRACEPARENT)

    sink = await _drain(emulator, sqs_server, queue, events={"sqs_queue_url": events_queue})

    process = _process_span(spans, "traced")
    assert process.context is not None and process.parent is not None
    assert f"{process.context.trace_id:032x}" == PRODUCER_TRACE
    assert f"{process.parent.span_id:016x}" == PRODUCER_SPAN
    assert process.kind is SpanKind.CONSUMER
    attributes = dict(process.attributes or {})
    assert attributes["messaging.system"] == "aws_sqs"
    assert attributes["orchestrator.outcome"] == EventType.SCREEN_SHARING_STARTED.value
    contact = attributes["aws.connect.contact_id"]
    assert contact and attributes["aws.connect.instance_id"]
    # Each lifecycle event is an event on the span, in order.
    assert [e.name for e in process.events] == [
        "request.received",
        "contact.started",
        "contact.agent_connected",
        "screen_sharing.started",
    ]

    # Every Connect call is a client span of the process span, in the producer's trace.
    calls = [s for s in _children(spans, process) if s.name.startswith("Connect.")]
    names = [s.name for s in calls]
    assert names[0] == "Connect.StartWebRTCContact"
    assert names[-1] == "Connect.StartScreenSharing"
    assert "Connect.DescribeContact" in names
    for call in calls:
        call_attributes = dict(call.attributes or {})
        assert call.kind is SpanKind.CLIENT
        assert call_attributes["rpc.system"] == "aws-api"
        assert call_attributes["rpc.service"] == "Connect"
        assert call_attributes["rpc.method"] == call.name.removeprefix("Connect.")
        assert call_attributes["aws.request_id"]
        assert call_attributes["http.response.status_code"] == 200
        assert call_attributes["orchestrator.attempt"] == 1
    # The sink publishes too.
    publishes = [s.name for s in _children(spans, process) if s.name.startswith("publish ")]
    assert {"publish log", "publish memory", "publish sqs"} <= set(publishes)

    # The receive span links to the producer's context.
    receives = spans.named("receive ")
    assert any(
        f"{link.context.trace_id:032x}" == PRODUCER_TRACE for r in receives for link in r.links
    )

    # Every event carries the trace id, as a field and (SQS sink) as a message attribute.
    assert {e.trace_id for e in sink.events} == {PRODUCER_TRACE}
    sent = await receive(sqs_client, events_queue, wait_time_s=1, message_attributes=True)
    assert sent
    for message in sent:
        assert json.loads(message.body)["trace_id"] == PRODUCER_TRACE
        assert message.attributes["trace_id"]["StringValue"] == PRODUCER_TRACE


async def test_aws_trace_header_is_honoured_and_traceparent_wins_over_it(
    spans: Spans, emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    xray = f"Root={XRAY_ROOT};Parent={XRAY_PARENT};Sampled=1"
    await _send(sqs_client, queue, request_body("xray"), xray=xray)
    await _send(
        sqs_client,
        queue,
        request_body("both"),
        xray=xray,
        traceparent=TRACEPARENT,
    )

    sink = await _drain(emulator, sqs_server, queue)

    from_xray = _process_span(spans, "xray")
    assert from_xray.context is not None and from_xray.parent is not None
    assert f"{from_xray.context.trace_id:032x}" == XRAY_TRACE
    assert f"{from_xray.parent.span_id:016x}" == XRAY_PARENT
    both = _process_span(spans, "both")
    assert both.context is not None
    assert f"{both.context.trace_id:032x}" == PRODUCER_TRACE
    assert {e.request_id: e.trace_id for e in sink.events if e.final} == {
        "xray": XRAY_TRACE,
        "both": PRODUCER_TRACE,
    }


async def test_without_a_producer_context_each_request_starts_its_own_trace(
    spans: Spans, emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    for name in ("first", "second"):
        await _send(sqs_client, queue, request_body(name))

    sink = await _drain(emulator, sqs_server, queue)

    first, second = _process_span(spans, "first"), _process_span(spans, "second")
    assert first.parent is None and second.parent is None
    assert first.context is not None and second.context is not None
    assert first.context.trace_id != second.context.trace_id
    traces = {e.request_id: e.trace_id for e in sink.events}
    assert traces == {
        "first": f"{first.context.trace_id:032x}",
        "second": f"{second.context.trace_id:032x}",
    }


async def test_contact_events_link_to_the_span_of_the_request_that_started_the_contact(
    spans: Spans,
    start_emulator: Callable[..., Any],
    sqs_server: LocalSqsServer,
    sqs_client: SQSClient,
) -> None:
    emulator, events = await events_emulator(start_emulator, sqs_server, sqs_client)
    queue, _ = await create_queue_with_dlq(sqs_client)
    for i in range(2):
        await _send(sqs_client, queue, request_body(f"ev-{i}"))

    # A polling schedule too slow to finish on: the contact events wake the watches.
    await _drain(
        emulator,
        sqs_server,
        queue,
        watch={"first_delay_s": 30.0, "multiplier": 2.0, "max_interval_s": 60.0},
        contact_events={"queue_url": events, "wait_time_s": 1},
    )

    consumed = spans.named("contact_event process")
    for request_id in ("ev-0", "ev-1"):
        process = _process_span(spans, request_id)
        assert process.context is not None and process.attributes is not None
        contact = process.attributes["aws.connect.contact_id"]
        mine = [
            s for s in consumed if (s.attributes or {}).get("aws.connect.contact_id") == contact
        ]
        here = (process.context.trace_id, process.context.span_id)
        linked = [
            s for s in mine if any((x.context.trace_id, x.context.span_id) == here for x in s.links)
        ]
        assert linked, [dict(s.attributes or {}) for s in mine]
        woke = {(s.attributes or {}).get("aws.connect.contact_event_type") for s in linked}
        assert "CONNECTED_TO_AGENT" in woke
        # Its own trace: a link, not a child.
        assert all(s.context is not None and s.parent is None for s in linked)
    # Once the lifecycles ended, nothing is left registered.
    assert len(spans.tracer.registry()) == 0


@pytest.fixture
def json_log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON lines logged as production logs them, during the test."""
    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging(level="INFO", json_output=True, stream=stream)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line]
    finally:
        structlog.configure(**saved_config)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


async def test_log_lines_inside_a_traced_request_carry_its_trace_and_span_ids(
    spans: Spans,
    json_log_lines: Callable[[], list[dict[str, Any]]],
    emulator: Emulator,
    sqs_server: LocalSqsServer,
    sqs_client: SQSClient,
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    await _send(
        sqs_client,
        queue,
        request_body("logged"),
        traceparent=TRACEPARENT,
    )

    await _drain(emulator, sqs_server, queue)

    process = _process_span(spans, "logged")
    assert process.context is not None
    lines = [r for r in json_log_lines() if r.get("request_id") == "logged"]
    assert {r["event"] for r in lines} >= {"request.received", "screen_sharing.started"}
    assert {r["trace_id"] for r in lines} == {PRODUCER_TRACE}
    # Each names the span it was written in: the process span or one of its children (the
    # lifecycle events are logged by the log sink, inside its `publish log` span).
    inside = {
        f"{s.context.span_id:016x}" for s in [process, *_children(spans, process)] if s.context
    }
    written_in = {r["span_id"] for r in lines}
    assert written_in <= inside
    publish_log = {f"{s.context.span_id:016x}" for s in spans.named("publish log") if s.context}
    assert written_in & publish_log
    # Lines outside any request carry none.
    outside = [r for r in json_log_lines() if r.get("event") == "worker.stopped"]
    assert outside and all("trace_id" not in r for r in outside)


async def test_enqueue_sends_each_request_with_its_own_traceparent(
    spans: Spans, sqs_client: SQSClient
) -> None:
    queue = await create_queue(sqs_client, f"enqueue-{uuid.uuid4().hex[:8]}")

    report = await enqueue(sqs_client, queue, [request_body("a"), request_body("b")], defaults=None)

    assert report.sent == 2
    (send,) = spans.named("send ")
    creates = spans.named("create ")
    assert send.context is not None and len(creates) == 2
    messages: list[Any] = []

    async def both_received() -> bool:
        messages.extend(await receive(sqs_client, queue, wait_time_s=1))
        return len(messages) == 2

    await eventually(both_received, within=20)
    contexts = {
        tracing.parse_traceparent(m.attributes["traceparent"]["StringValue"]) for m in messages
    }
    assert {(c.trace_id, c.span_id) for c in contexts if c} == {
        (send.context.trace_id, create.context.span_id) for create in creates if create.context
    }


async def test_untraced_workers_emit_events_without_a_trace_id(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    await _send(
        sqs_client,
        queue,
        request_body("plain"),
        traceparent=TRACEPARENT,
    )
    with anyio.fail_after(60):
        sink = await _drain(emulator, sqs_server, queue)
    assert sink.events and {e.trace_id for e in sink.events} == {None}
    assert all(e.to_dict()["trace_id"] is None for e in sink.events)


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_throttled_attempts_and_their_retries_are_in_the_trace(
    spans: Spans,
    start_emulator: Callable[..., Any],
    sqs_server: LocalSqsServer,
    sqs_client: SQSClient,
) -> None:
    # Connect allows one start a second; the worker's budget thinks it may send many.
    emulator: Emulator = await start_emulator(
        quotas={Operation.START_WEBRTC_CONTACT: Quota(1.0, 1.0)}
    )
    queue, _ = await create_queue_with_dlq(sqs_client)
    for i in range(3):
        await _send(sqs_client, queue, request_body(f"burst-{i}"))

    sink = await _drain(
        emulator,
        sqs_server,
        queue,
        connect={"start_webrtc_contact_rate": 20, "start_webrtc_contact_burst": 20},
    )

    assert {e.type for e in sink.events if e.final} == {EventType.SCREEN_SHARING_STARTED}
    starts = spans.named("Connect.StartWebRTCContact")
    throttled = [s for s in starts if _attributes(s).get("orchestrator.connect.throttled")]
    assert throttled
    for span in throttled:
        assert _attributes(span)["error.type"] in {"TooManyRequestsException", "Throttling"}
        assert _attributes(span)["http.response.status_code"] == 429
        assert _attributes(span)["aws.request_id"]
    # The retry that followed: a later attempt of the same call, under the same process span.
    for span in throttled:
        retries = [
            s
            for s in starts
            if s.parent == span.parent
            and _attributes(s)["orchestrator.attempt"] > _attributes(span)["orchestrator.attempt"]
        ]
        assert retries
    processes = [s for s in spans.named("process") if s.events]
    scheduled = [e for p in processes for e in p.events if e.name == "retry.scheduled"]
    assert len(scheduled) >= len(throttled)
    assert {dict(e.attributes or {})["policy"] for e in scheduled} == {
        "connect.start_webrtc_contact"
    }


async def test_waits_for_a_rate_budget_token_are_events_of_the_call_that_waited(
    spans: Spans, emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    for i in range(3):
        await _send(sqs_client, queue, request_body(f"paced-{i}"))

    # The worker's own budget: one start every half second, no burst beyond one.
    await _drain(
        emulator,
        sqs_server,
        queue,
        connect={"start_webrtc_contact_rate": 2, "start_webrtc_contact_burst": 1},
    )

    starts = spans.named("Connect.StartWebRTCContact")
    waits = [e for s in starts for e in s.events if e.name == "rate_budget.waited"]
    assert len(waits) >= 2  # the first start had its token at once; the others waited
    waited = [(e.attributes or {}).get("wait_s") for e in waits]
    assert all(isinstance(w, float) and w > 0 for w in waited), waited
