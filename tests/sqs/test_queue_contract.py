"""One contract, two queue sources: `SqsQueueSource` (over a real SQS server) and `MemoryQueue`.

The worker only relies on what these tests state, so either implementation can feed it.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import pytest

from orchestrator.sqs import QueueMessage, QueueSource, SqsQueueSource
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.memory_queue import MemoryQueue
from tests.support import eventually

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


@dataclass
class Harness:
    """A queue source under test, plus how to put messages on its queue."""

    source: QueueSource
    send: Callable[[str], Awaitable[None]]
    dead_letters: Callable[[], Awaitable[list[str]]]


@contextlib.asynccontextmanager
async def sqs_harness(sqs: SQSClient, max_receive_count: int | None) -> AsyncIterator[Harness]:
    name = f"contract-{uuid.uuid4().hex[:10]}"
    dlq = (await sqs.create_queue(QueueName=f"{name}-dlq"))["QueueUrl"]
    attributes: dict[str, str] = {}
    if max_receive_count is not None:
        arn = (await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": arn, "maxReceiveCount": max_receive_count}
        )
    url = (await sqs.create_queue(QueueName=name, Attributes=attributes))["QueueUrl"]  # type: ignore[arg-type]

    async def send(body: str) -> None:
        await sqs.send_message(QueueUrl=url, MessageBody=body)

    async def dead_letters() -> list[str]:
        got = await sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return [m.get("Body", "") for m in got.get("Messages", [])]

    async with SqsQueueSource(sqs, url) as source:
        yield Harness(source, send, dead_letters)


@contextlib.asynccontextmanager
async def memory_harness(max_receive_count: int | None) -> AsyncIterator[Harness]:
    queue = MemoryQueue(max_receive_count=max_receive_count)

    async def send(body: str) -> None:
        queue.send(body)

    async def dead_letters() -> list[str]:
        return list(queue.dead_letters)

    yield Harness(queue, send, dead_letters)


HarnessFactory = Callable[[int | None], contextlib.AbstractAsyncContextManager[Harness]]


@pytest.fixture(params=["sqs", "memory"])
def make_harness(
    request: pytest.FixtureRequest, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> HarnessFactory:
    if request.param == "sqs":
        return lambda max_receive: sqs_harness(sqs_client, max_receive)
    return memory_harness


async def receive_all(source: QueueSource, count: int, visibility: int = 30) -> list[QueueMessage]:
    got: list[QueueMessage] = []
    for _ in range(20):
        got += await source.receive(10, wait_time_s=0, visibility_timeout_s=visibility)
        if len(got) >= count:
            break
    return got


async def test_received_messages_are_hidden_until_deleted(make_harness: HarnessFactory) -> None:
    async with make_harness(None) as h:
        for body in ("a", "b", "c"):
            await h.send(body)
        first = await receive_all(h.source, 3)
        assert sorted(m.body for m in first) == ["a", "b", "c"]
        assert all(m.receive_count == 1 for m in first)
        assert await h.source.receive(10, wait_time_s=0, visibility_timeout_s=30) == []
        for message in first:
            await h.source.delete(message)
        assert await h.source.receive(10, wait_time_s=0, visibility_timeout_s=30) == []


async def test_receive_never_returns_more_than_asked(make_harness: HarnessFactory) -> None:
    async with make_harness(None) as h:
        for i in range(5):
            await h.send(f"m{i}")
        got = await h.source.receive(2, wait_time_s=0, visibility_timeout_s=30)
        assert 1 <= len(got) <= 2


async def test_a_message_handed_back_at_once_comes_again_with_a_higher_count(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(None) as h:
        await h.send("again")
        (first,) = await receive_all(h.source, 1)
        await h.source.change_visibility(first, 0)
        (second,) = await receive_all(h.source, 1)
        assert second.body == "again"
        assert second.receive_count == 2
        assert second.message_id == first.message_id


async def test_a_lapsed_visibility_timeout_redelivers_the_message(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(None) as h:
        await h.send("lapse")
        await receive_all(h.source, 1, visibility=1)
        redelivered: list[QueueMessage] = []

        async def comes_back() -> bool:
            redelivered.extend(await h.source.receive(10, wait_time_s=0, visibility_timeout_s=30))
            return bool(redelivered)

        await eventually(comes_back, within=10, message="the message to come back")
        assert redelivered[0].receive_count == 2


async def test_extending_visibility_keeps_the_message_hidden(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(None) as h:
        await h.send("kept")
        (message,) = await receive_all(h.source, 1, visibility=1)
        await h.source.change_visibility(message, 30)
        # A long poll reaching well past the original one-second timeout finds nothing.
        assert await h.source.receive(10, wait_time_s=2, visibility_timeout_s=30) == []


async def test_long_poll_returns_a_message_sent_while_waiting(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(None) as h, anyio.create_task_group() as tg:
        got: list[QueueMessage] = []

        async def wait() -> None:
            got.extend(await h.source.receive(10, wait_time_s=5, visibility_timeout_s=30))

        tg.start_soon(wait)
        await h.send("late")
    assert [m.body for m in got] == ["late"]


async def test_redrive_policy_is_reported_and_moves_poison_to_the_dead_letters(
    make_harness: HarnessFactory,
) -> None:
    async with make_harness(2) as h:
        assert await h.source.max_receive_count() == 2
        await h.send("poison")
        for _ in range(2):
            (message,) = await receive_all(h.source, 1)
            await h.source.change_visibility(message, 0)
        assert await h.source.receive(10, wait_time_s=0, visibility_timeout_s=30) == []
        assert await h.dead_letters() == ["poison"]


async def test_a_queue_without_redrive_policy_reports_none(make_harness: HarnessFactory) -> None:
    async with make_harness(None) as h:
        assert await h.source.max_receive_count() is None
