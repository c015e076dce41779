"""The reply sink on the local SQS server: FIFO reply queues, a queue that goes away, and neither
the configured sinks nor the reply queue waiting for the other."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import anyio
import anyio.abc
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.metrics import Metrics
from orchestrator.sinks import MemorySink, ReplyRoutes, ReplySink
from orchestrator.sinks.base import sink_policy
from orchestrator.sqs import receive
from orchestrator.testing.queues import create_queue
from orchestrator.testing.requests import REGION
from orchestrator.testing.waiting import eventually
from tests.support.engine import HeldSink, types_of

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


async def test_a_held_configured_sink_does_not_hold_up_the_reply(sqs_client: SQSClient) -> None:
    url = await create_queue(sqs_client, "replies-first")
    routes, inner = ReplyRoutes(), MemorySink()
    held = HeldSink(inner, EventType.STARTED)
    sink = ReplySink(held, sqs_client, routes, include_connection_data=True, metrics=Metrics())
    done = anyio.Event()

    async def publish() -> None:
        with routes.route("r-1", url):
            await sink.publish(events("r-1")[1:])
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(publish)
        # The requester has its connection data while a configured sink still holds the event.
        got = await receive(sqs_client, url, wait_time_s=5, message_attributes=True)
        assert [m.attributes["type"]["StringValue"] for m in got] == [EventType.STARTED]
        assert held.held.is_set()
        assert not done.is_set()  # publish returns only once the configured sinks have it too
        assert inner.events == []
        held.release.set()
    assert types_of(inner.events) == [EventType.STARTED]


async def test_a_reply_queue_that_does_not_answer_does_not_hold_up_the_configured_sinks() -> None:
    """The reply queue's endpoint accepts the connection and never answers."""
    inner, metrics = MemorySink(), Metrics()
    routes = ReplyRoutes()
    done = anyio.Event()
    silent = anyio.Event()
    config = AioConfig(read_timeout=1, connect_timeout=1, retries={"max_attempts": 0})

    async def never_answer(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await silent.wait()

    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1") as listener,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(listener.serve, never_answer)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 (not Django)
        async with get_session().create_client(
            "sqs", region_name=REGION, endpoint_url=f"http://127.0.0.1:{port}", config=config
        ) as silent_sqs:
            policy = sink_policy("test", max_attempts=1, max_time_s=1.0, max_backoff_s=0.1)
            sink = ReplySink(
                inner, silent_sqs, routes, include_connection_data=False, metrics=metrics,
                policy=policy,
            )  # fmt: skip
            url = f"http://127.0.0.1:{port}/000000000000/replies-silent"

            async def publish() -> None:
                with routes.route("r-1", url):
                    await sink.publish(events("r-1")[1:])
                done.set()

            tg.start_soon(publish)
            await eventually(lambda: inner.events, within=5, message="the configured sinks")
            assert not done.is_set()  # the reply is still out
            await done.wait()  # given up after its (short) retries: publish raises nothing
        silent.set()
        tg.cancel_scope.cancel()
    assert types_of(inner.events) == [EventType.STARTED]
    assert metrics.value("orchestrator_reply_failures_total", {"reason": "error"}) == 1
