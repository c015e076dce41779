"""Through the real OTLP/HTTP exporter, configured by the standard environment, to a receiver on
loopback: the spans of a producer's request arrive, decoded, in the producer's trace."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from orchestrator import tracing
from orchestrator.daemon.assembly import open_worker
from orchestrator.testing.emulator import Emulator
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.otlp import OtlpReceiver
from orchestrator.tracing.otel import DEFAULT_SERVICE_NAME
from tests.support import create_queue_with_dlq, request_body, settings_for

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(90)

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


async def test_spans_reach_an_otlp_http_receiver_in_the_producers_trace(
    monkeypatch: pytest.MonkeyPatch,
    emulator: Emulator,
    sqs_server: LocalSqsServer,
    sqs_client: SQSClient,
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    await sqs_client.send_message(
        QueueUrl=queue,
        MessageBody=request_body("exported"),
        MessageAttributes={
            "traceparent": {"DataType": "String", "StringValue": f"00-{TRACE}-{PARENT}-01"}
        },
    )
    monkeypatch.delenv("OTEL_SDK_DISABLED")  # the suite's default (tests/conftest.py)

    with OtlpReceiver() as receiver:
        # The exporter reads its endpoint from the process environment, as in production.
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.traces_url)
        with tracing.configured({"OTEL_TRACES_EXPORTER": "otlp"}) as implementation:
            assert implementation.enabled
            settings = settings_for(emulator.url, sqs_server.url, queue)
            async with open_worker(settings) as worker:
                await worker.run(drain=True)
        # Leaving the block flushed the batch processor: everything was exported.
        spans = receiver.spans()

    assert receiver.requests >= 1
    assert {s.service_name for s in spans} == {DEFAULT_SERVICE_NAME}
    (process,) = [s for s in spans if s.name.startswith("process")]
    assert (process.trace_id, process.parent_span_id) == (TRACE, PARENT)
    assert process.attributes["messaging.message.conversation_id"] == "exported"
    assert process.attributes["orchestrator.outcome"] == "screen_sharing.started"
    connect = [s for s in spans if s.name.startswith("Connect.")]
    assert {s.name for s in connect} >= {
        "Connect.StartWebRTCContact",
        "Connect.DescribeContact",
        "Connect.StartScreenSharing",
    }
    assert all(s.trace_id == TRACE and s.parent_span_id == process.span_id for s in connect)
    (received,) = [s for s in spans if s.name.startswith("receive ")]
    assert (TRACE, PARENT) in received.links
