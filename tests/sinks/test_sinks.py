"""Event sinks: JSONL file, fan-out with retries, batching, and SQS/SNS/EventBridge over moto."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from aiobotocore.session import get_session

from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.errors import SinkError
from orchestrator.metrics import Metrics
from orchestrator.retry import RetryPolicy
from orchestrator.sinks import (
    BatchingSink,
    EventBridgeSink,
    FanoutSink,
    JsonlSink,
    MemorySink,
    SnsEventSink,
    SqsEventSink,
)
from orchestrator.sinks.base import SINK_FAILURES
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.conftest import INSTANCE_ID, REGION

if TYPE_CHECKING:
    from types_aiobotocore_events import EventBridgeClient
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient

TOKEN = "PtOkEn0123456789abcdefABCDEF0123456789xyz"
JOIN_TOKEN = "JoInToKeN9876543210zyxwZYXW9876543210abc"


def started_event(request_id: str = "req-1") -> LifecycleEvent:
    return LifecycleEvent.create(
        EventType.STARTED,
        request_id,
        contact_id="contact-1",
        instance_id=INSTANCE_ID,
        data={"ContactId": "contact-1", "ParticipantId": "participant-1"},
        secrets={
            "ParticipantToken": TOKEN,
            "ConnectionData": {"Attendee": {"AttendeeId": "a-1", "JoinToken": JOIN_TOKEN}},
        },
    )


def plain_event(request_id: str, type_: EventType = EventType.RECEIVED) -> LifecycleEvent:
    return LifecycleEvent.create(type_, request_id, instance_id=INSTANCE_ID)


def quick_policy(max_attempts: int = 3) -> RetryPolicy:
    return RetryPolicy(
        "test.publish",
        retry_on=SINK_FAILURES,
        max_attempts=max_attempts,
        initial_s=0.001,
        max_backoff_s=0.002,
    )


class FailingSink:
    """A sink that fails its first `failures` publishes (forever by default), then delivers."""

    def __init__(self, name: str = "broken", failures: int = 10**9) -> None:
        self.name = name
        self.failures = failures
        self.attempts = 0
        self.delivered: list[LifecycleEvent] = []

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise SinkError(f"{self.name} is down")
        self.delivered.extend(events)


class RecordingSink:
    """Remembers each batch it was handed."""

    name = "recording"

    def __init__(self) -> None:
        self.batches: list[list[LifecycleEvent]] = []

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        await anyio.lowlevel.checkpoint()
        self.batches.append(list(events))


# -- events ----------------------------------------------------------------------------------


def test_event_id_is_request_id_and_type_and_only_final_types_are_final() -> None:
    received = plain_event("req-9")
    failed = plain_event("req-9", EventType.FAILED)

    assert received.id == "req-9:request.received"
    assert not received.final
    assert failed.final
    assert failed.to_dict()["time"].endswith("Z")


def test_connection_data_leaves_an_event_only_when_asked_for() -> None:
    event = started_event()

    public = event.to_dict()
    private = event.to_dict(include_connection_data=True)

    assert "ParticipantToken" not in public["data"]
    assert "ConnectionData" not in public["data"]
    assert private["data"]["ParticipantToken"] == TOKEN
    assert private["data"]["ConnectionData"]["Attendee"]["JoinToken"] == JOIN_TOKEN
    assert TOKEN not in event.to_json()
    assert TOKEN not in repr(event)
    assert TOKEN not in str(event.model_dump())


# -- JSONL -----------------------------------------------------------------------------------


@pytest.mark.parametrize("include", [False, True])
async def test_jsonl_sink_appends_one_line_per_event(tmp_path: Path, include: bool) -> None:
    path = tmp_path / "nested" / "events.jsonl"
    sink = JsonlSink(path, include_connection_data=include)

    await sink.publish([plain_event("req-1"), started_event("req-1")])
    await sink.publish([plain_event("req-2")])

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["id"] for line in lines] == [
        "req-1:request.received",
        "req-1:contact.started",
        "req-2:request.received",
    ]
    assert ("ParticipantToken" in lines[1]["data"]) is include
    assert (TOKEN in path.read_text()) is include


# -- fan-out ---------------------------------------------------------------------------------


async def test_fanout_raises_sink_error_when_one_sink_keeps_failing_and_still_delivers_others() -> (
    None
):
    healthy = MemorySink()
    broken = FailingSink()
    metrics = Metrics()
    fanout = FanoutSink([healthy, broken], policy=quick_policy(3), metrics=metrics)
    events = [plain_event("req-1"), plain_event("req-2")]

    with pytest.raises(SinkError, match="sink broken failed"):
        await fanout.publish(events)

    assert healthy.events == events
    assert broken.attempts == 3
    assert metrics.value("orchestrator_event_publish_failures_total", {"sink": "broken"}) == 6
    assert metrics.value("orchestrator_event_publishes_total", {"sink": "memory"}) == 2


async def test_fanout_retries_a_sink_until_it_recovers() -> None:
    flaky = FailingSink("flaky", failures=2)
    fanout = FanoutSink([flaky, MemorySink()], metrics=Metrics(), policy=quick_policy(3))

    await fanout.publish([plain_event("req-1")])

    assert flaky.attempts == 3
    assert [e.id for e in flaky.delivered] == ["req-1:request.received"]


async def test_fanout_of_nothing_publishes_nothing() -> None:
    broken = FailingSink()

    await FanoutSink([broken], metrics=Metrics(), policy=quick_policy()).publish([])

    assert broken.attempts == 0


def test_fanout_needs_a_sink() -> None:
    with pytest.raises(ValueError, match="at least one sink"):
        FanoutSink([], metrics=Metrics())


# -- batching --------------------------------------------------------------------------------


async def test_batching_sink_coalesces_concurrent_publishes_into_few_batches() -> None:
    inner = RecordingSink()
    returned: list[str] = []

    async def publish(sink: BatchingSink, request_id: str) -> None:
        await sink.publish([plain_event(request_id)])
        returned.append(request_id)

    async with BatchingSink(inner, max_batch=10) as sink, anyio.create_task_group() as tg:
        for index in range(25):
            tg.start_soon(publish, sink, f"req-{index}")

    assert sorted(returned) == sorted(f"req-{index}" for index in range(25))
    delivered = [e.request_id for batch in inner.batches for e in batch]
    assert sorted(delivered) == sorted(returned)
    assert all(len(batch) <= 10 for batch in inner.batches)
    assert sink.batches == len(inner.batches) == 3


async def test_batching_sink_hands_a_failure_to_every_waiter_of_the_batch() -> None:
    outcomes: dict[str, BaseException | None] = {}

    async def publish(sink: BatchingSink, request_id: str) -> None:
        try:
            await sink.publish([plain_event(request_id)])
        except SinkError as exc:
            outcomes[request_id] = exc
        else:
            outcomes[request_id] = None

    async with BatchingSink(FailingSink(), max_batch=10) as sink, anyio.create_task_group() as tg:
        for index in range(5):
            tg.start_soon(publish, sink, f"req-{index}")

    assert set(outcomes) == {f"req-{index}" for index in range(5)}
    assert all(isinstance(error, SinkError) for error in outcomes.values())
    assert sink.batches == 1


async def test_batching_sink_passes_through_when_not_running() -> None:
    inner = RecordingSink()

    await BatchingSink(inner).publish([plain_event("req-1")])

    assert len(inner.batches) == 1


# -- AWS sinks over moto ---------------------------------------------------------------------


@pytest.fixture
async def sns_client(sqs_server: LocalSqsServer) -> AsyncIterator[SNSClient]:
    async with get_session().create_client(
        "sns", region_name=REGION, endpoint_url=sqs_server.url
    ) as client:
        yield client


@pytest.fixture
async def events_client(sqs_server: LocalSqsServer) -> AsyncIterator[EventBridgeClient]:
    async with get_session().create_client(
        "events", region_name=REGION, endpoint_url=sqs_server.url
    ) as client:
        yield client


async def queue_arn(sqs_client: SQSClient, queue_url: str) -> str:
    attributes = await sqs_client.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn"]
    )
    return attributes["Attributes"]["QueueArn"]


async def drain(sqs_client: SQSClient, queue_url: str, expected: int) -> list[dict[str, Any]]:
    """Receive until `expected` messages arrived (each deleted), or fail after a few seconds."""
    messages: list[dict[str, Any]] = []
    with anyio.fail_after(10):
        while len(messages) < expected:
            response = await sqs_client.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=1,
                MessageAttributeNames=["All"],
            )
            for message in response.get("Messages", []):
                messages.append(dict(message))
                await sqs_client.delete_message(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
    return messages


async def test_sqs_sink_delivers_every_event_in_batches_of_ten(
    sqs_client: SQSClient, sqs_queue: str
) -> None:
    events = [started_event("req-0")] + [plain_event(f"req-{i}") for i in range(1, 12)]

    await SqsEventSink(sqs_client, sqs_queue, include_connection_data=True).publish(events)

    messages = await drain(sqs_client, sqs_queue, 12)
    bodies = {json.loads(m["Body"])["id"]: json.loads(m["Body"]) for m in messages}
    assert set(bodies) == {e.id for e in events}
    assert bodies["req-0:contact.started"]["data"]["ParticipantToken"] == TOKEN
    types = {m["MessageAttributes"]["type"]["StringValue"] for m in messages}
    assert types == {"contact.started", "request.received"}


async def test_sqs_sink_can_leave_connection_data_out(
    sqs_client: SQSClient, sqs_queue: str
) -> None:
    await SqsEventSink(sqs_client, sqs_queue, include_connection_data=False).publish(
        [started_event()]
    )

    (message,) = await drain(sqs_client, sqs_queue, 1)
    assert TOKEN not in message["Body"]
    assert message["MessageAttributes"]["request_id"]["StringValue"] == "req-1"


async def test_sqs_sink_on_a_fifo_queue_drops_duplicate_events(sqs_client: SQSClient) -> None:
    created = await sqs_client.create_queue(
        QueueName=f"events-{uuid.uuid4().hex[:12]}.fifo", Attributes={"FifoQueue": "true"}
    )
    queue = created["QueueUrl"]
    sink = SqsEventSink(sqs_client, queue, include_connection_data=True)

    await sink.publish([plain_event("req-1"), started_event("req-1")])
    await sink.publish([started_event("req-1")])  # a redelivered lifecycle says it again

    messages = await drain(sqs_client, queue, 2)
    assert [json.loads(m["Body"])["id"] for m in messages] == [
        "req-1:request.received",
        "req-1:contact.started",
    ]
    extra = await sqs_client.receive_message(QueueUrl=queue, WaitTimeSeconds=0)
    assert extra.get("Messages", []) == []


async def test_sns_sink_delivers_to_a_subscribed_queue(
    sns_client: SNSClient, sqs_client: SQSClient, sqs_queue: str
) -> None:
    topic = (await sns_client.create_topic(Name=f"events-{uuid.uuid4().hex[:12]}"))["TopicArn"]
    await sns_client.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=await queue_arn(sqs_client, sqs_queue),
        Attributes={"RawMessageDelivery": "true"},
    )
    events = [started_event("req-1"), plain_event("req-2", EventType.TIMED_OUT)]

    await SnsEventSink(sns_client, topic, include_connection_data=True).publish(events)

    messages = await drain(sqs_client, sqs_queue, 2)
    bodies = {json.loads(m["Body"])["id"]: json.loads(m["Body"]) for m in messages}
    assert set(bodies) == {"req-1:contact.started", "req-2:contact.timed_out"}
    assert bodies["req-1:contact.started"]["data"]["ParticipantToken"] == TOKEN
    assert bodies["req-2:contact.timed_out"]["final"] is True


async def test_an_sns_subscription_filtered_by_request_id_gets_only_that_requests_events(
    sns_client: SNSClient, sqs_client: SQSClient, sqs_queue: str
) -> None:
    """Several replicas of a backend without the client: each subscribes its own queue with a
    `request_id` filter policy (docs: integrating)."""
    topic = (await sns_client.create_topic(Name=f"events-{uuid.uuid4().hex[:12]}"))["TopicArn"]
    await sns_client.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=await queue_arn(sqs_client, sqs_queue),
        Attributes={
            "RawMessageDelivery": "true",
            "FilterPolicy": json.dumps({"request_id": ["req-1"]}),
        },
    )
    events = [
        started_event("req-1"),
        plain_event("req-2", EventType.TIMED_OUT),
        plain_event("req-1", EventType.AGENT_CONNECTED),
    ]

    await SnsEventSink(sns_client, topic, include_connection_data=False).publish(events)

    messages = await drain(sqs_client, sqs_queue, 2)
    assert {json.loads(m["Body"])["request_id"] for m in messages} == {"req-1"}
    extra = await sqs_client.receive_message(QueueUrl=sqs_queue, WaitTimeSeconds=1)
    assert extra.get("Messages", []) == []


async def test_eventbridge_sink_delivers_to_a_rule_targeting_a_queue(
    events_client: EventBridgeClient, sqs_client: SQSClient, sqs_queue: str
) -> None:
    bus = f"orchestrator-{uuid.uuid4().hex[:12]}"
    await events_client.create_event_bus(Name=bus)
    await events_client.put_rule(
        Name="lifecycle",
        EventBusName=bus,
        EventPattern=json.dumps({"source": ["contact-orchestrator"]}),
    )
    await events_client.put_targets(
        Rule="lifecycle",
        EventBusName=bus,
        Targets=[{"Id": "queue", "Arn": await queue_arn(sqs_client, sqs_queue)}],
    )

    await EventBridgeSink(events_client, bus, include_connection_data=False).publish(
        [started_event("req-1"), plain_event("req-1", EventType.AGENT_CONNECTED)]
    )

    messages = await drain(sqs_client, sqs_queue, 2)
    envelopes = [json.loads(m["Body"]) for m in messages]
    assert {e["detail-type"] for e in envelopes} == {"contact.started", "contact.agent_connected"}
    assert {e["source"] for e in envelopes} == {"contact-orchestrator"}
    assert {e["detail"]["id"] for e in envelopes} == {
        "req-1:contact.started",
        "req-1:contact.agent_connected",
    }
    assert all(TOKEN not in m["Body"] for m in messages)
