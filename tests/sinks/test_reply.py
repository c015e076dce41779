"""The reply sink on the local SQS server: FIFO reply queues, and a queue that goes away."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import anyio

from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.metrics import Metrics
from orchestrator.sinks import MemorySink, ReplyRoutes, ReplySink
from orchestrator.sqs import receive
from orchestrator.testing.queues import create_queue

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


def events(request_id: str) -> list[LifecycleEvent]:
    return [
        LifecycleEvent.create(EventType.RECEIVED, request_id),
        LifecycleEvent.create(
            EventType.STARTED,
            request_id,
            contact_id="c-1",
            data={"ContactId": "c-1"},
            secrets={"ParticipantToken": "secret-token"},
        ),
    ]


async def test_a_fifo_reply_queue_gets_one_group_per_request_deduplicated_by_event_id(
    sqs_client: SQSClient,
) -> None:
    name = "replies-fifo.fifo"
    url = (await sqs_client.create_queue(QueueName=name, Attributes={"FifoQueue": "true"}))[
        "QueueUrl"
    ]
    routes, inner = ReplyRoutes(), MemorySink()
    sink = ReplySink(inner, sqs_client, routes, include_connection_data=True, metrics=Metrics())
    with routes.route("r-1", url):
        await sink.publish(events("r-1"))
        await sink.publish(events("r-1")[:1])  # a redelivery's duplicate: deduplicated
    await sink.publish(events("r-2"))  # no route: the configured sinks only
    got = await receive(
        sqs_client,
        url,
        wait_time_s=1,
        system_attributes=("MessageGroupId", "MessageDeduplicationId"),
        message_attributes=True,
    )
    assert [m.group_id for m in got] == ["r-1", "r-1"]
    assert [m.attributes["type"]["StringValue"] for m in got] == [
        EventType.RECEIVED,
        EventType.STARTED,
    ]
    assert {m.attributes["request_id"]["StringValue"] for m in got} == {"r-1"}
    assert '"ParticipantToken":"secret-token"' in got[1].body
    assert len(inner.events) == 5
    assert len(routes) == 0  # the route lasts as long as its block


async def test_a_gone_reply_queue_is_given_up_once_and_the_inner_sinks_get_everything(
    sqs_client: SQSClient,
) -> None:
    url = await create_queue(sqs_client, "replies-gone")
    await sqs_client.delete_queue(QueueUrl=url)
    routes, inner, metrics = ReplyRoutes(), MemorySink(), Metrics()
    sink = ReplySink(inner, sqs_client, routes, include_connection_data=False, metrics=metrics)
    with routes.route("r-1", url):
        for event in events("r-1"):
            await sink.publish([event])
        route = routes.get("r-1")
        assert route is not None and route.given_up == "missing_queue"
    assert [e.type for e in inner.events] == [EventType.RECEIVED, EventType.STARTED]
    assert metrics.value("orchestrator_reply_failures_total", {"reason": "missing_queue"}) == 2


async def test_concurrent_replies_to_one_queue_all_arrive_in_batches(
    sqs_client: SQSClient,
) -> None:
    url = await create_queue(sqs_client, "replies-shared")
    routes, inner = ReplyRoutes(), MemorySink()
    requests = [f"r-{i}" for i in range(12)]
    async with ReplySink(
        inner, sqs_client, routes, include_connection_data=False, metrics=Metrics()
    ) as sink:

        async def lifecycle(request_id: str) -> None:
            with routes.route(request_id, url):
                await sink.publish(events(request_id)[:1])

        async with anyio.create_task_group() as tg:
            for request_id in requests:
                tg.start_soon(lifecycle, request_id)
        # Twelve lifecycles' replies went out in fewer SQS calls than replies.
        assert sink._batcher.batches < len(requests)
    got: list[str] = []
    while batch := await receive(sqs_client, url, wait_time_s=0):
        got += [json.loads(m.body)["request_id"] for m in batch]
    assert sorted(got) == sorted(requests)
