"""Cancels in fleet mode, three workers against a real redis-server: a cancel received by a
worker that does not hold the request still acts (tombstone in Redis, notice to the holder), and
a cancel that cannot be recorded is not acknowledged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from redis.asyncio import Redis

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.worker import Worker
from orchestrator.engine.cancellation import Tombstone
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.queues import create_queue_with_dlq, queue_counts, send_all
from orchestrator.testing.redis import RedisServer
from orchestrator.testing.requests import cancel_body, request_body
from tests.support import EmulatorFactory, eventually, settings_for
from tests.support.engine import started_contact, types_of

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(90)

PREFIX = "orchestrator:us-east-1"


def final_of(sink: MemorySink, request_id: str) -> LifecycleEvent | None:
    return next((e for e in sink.events if e.request_id == request_id and e.final), None)


def counted(workers: list[Worker], result: str) -> float:
    return sum(w.metrics.value("orchestrator_cancels_total", {"result": result}) for w in workers)


class Fleet:
    """One holder reading the request queue, two others reading the cancel queue."""

    def __init__(self, sqs: SQSClient) -> None:
        self.sqs = sqs
        self.requests = ""
        self.cancels = ""
        self.holder_sink = MemorySink()
        self.holder: Worker | None = None
        self.others: list[Worker] = []

    async def send_request(self, request_id: str) -> None:
        await send_all(self.sqs, self.requests, [request_body(request_id)])

    async def send_cancel(self, request_id: str) -> None:
        await send_all(self.sqs, self.cancels, [cancel_body(request_id)])


ThreeWorkers = Callable[..., AbstractAsyncContextManager[tuple[Fleet, Emulator]]]


@pytest.fixture
def three_workers(
    start_emulator: EmulatorFactory,
    sqs_server: LocalSqsServer,
    sqs_client: SQSClient,
    redis_server: RedisServer,
) -> ThreeWorkers:
    @asynccontextmanager
    async def run(**emulator_config: Any) -> AsyncIterator[tuple[Fleet, Emulator]]:
        emulator = await start_emulator(agent_delay_s=(60.0, 60.0), **emulator_config)
        fleet = Fleet(sqs_client)
        fleet.requests, _ = await create_queue_with_dlq(sqs_client)
        fleet.cancels, _ = await create_queue_with_dlq(sqs_client)

        def settings(queue: str) -> Any:
            return settings_for(
                emulator.url,
                sqs_server.url,
                queue,
                fleet={"redis_url": redis_server.url, "heartbeat_interval_s": 0.2},
                connect={"capacity_max_wait_s": 60},
            )

        async with AsyncExitStack() as stack:
            fleet.holder = await stack.enter_async_context(
                open_worker(settings(fleet.requests), extra_sinks=[fleet.holder_sink])
            )
            for _ in range(2):
                other = await stack.enter_async_context(open_worker(settings(fleet.cancels)))
                fleet.others.append(other)
            async with anyio.create_task_group() as tg:
                for worker in (fleet.holder, *fleet.others):
                    tg.start_soon(worker.run)
                try:
                    yield fleet, emulator
                finally:
                    for worker in (fleet.holder, *fleet.others):
                        worker.stop()
                        worker.stop()

    return run


async def test_a_cancel_received_by_another_worker_stops_the_holders_waiting_contact(
    three_workers: ThreeWorkers, redis: Redis
) -> None:
    async with three_workers() as (fleet, emulator):
        await fleet.send_request("fleet-queued-1")
        contact_id = await eventually(
            lambda: started_contact(fleet.holder_sink.events, "fleet-queued-1")
        )
        await fleet.send_cancel("fleet-queued-1")
        final = await eventually(lambda: final_of(fleet.holder_sink, "fleet-queued-1"))

    assert final.type is EventType.CANCELLED
    assert (final.data["stage"], final.data["contact_stopped"]) == ("waiting_for_agent", True)
    assert "stopped_by" not in final.data  # the holder stopped it, told by the notice
    assert EventType.DISCONNECTED not in types_of(fleet.holder_sink.events)
    truth = await EmulatorControl(emulator.url).contact(contact_id)
    assert (truth["DisconnectReason"], truth["ConnectedToAgentAt"]) == ("API", None)
    assert counted(fleet.others, "unknown") == 1  # what the receiver knows of it
    stone = await redis.get(f"{PREFIX}:tombstone:fleet-queued-1")
    assert stone is not None and Tombstone.from_json(stone).request_id == "fleet-queued-1"


async def test_a_cancel_recorded_by_another_worker_before_the_request_keeps_it_from_connect(
    three_workers: ThreeWorkers, redis: Redis
) -> None:
    async with three_workers() as (fleet, emulator):
        await fleet.send_cancel("fleet-early-1")

        async def recorded() -> bool:
            return bool(await redis.exists(f"{PREFIX}:tombstone:fleet-early-1"))

        await eventually(recorded, message="the tombstone in Redis")
        await fleet.send_request("fleet-early-1")
        final = await eventually(lambda: final_of(fleet.holder_sink, "fleet-early-1"))

    assert (final.type, final.data["stage"]) == (EventType.CANCELLED, "before_start")
    assert await EmulatorControl(emulator.url).contacts() == []
    ttl = await redis.ttl(f"{PREFIX}:tombstone:fleet-early-1")
    assert 0 < ttl <= 300  # max(request_ttl_s = 300, the 300 s floor)


async def test_a_notice_ends_the_holders_wait_at_the_capacity_gate(
    three_workers: ThreeWorkers,
) -> None:
    async with three_workers(max_concurrent_calls=1) as (fleet, emulator):
        control = EmulatorControl(emulator.url)
        await fleet.send_request("fleet-cap-1")
        await eventually(lambda: started_contact(fleet.holder_sink.events, "fleet-cap-1"))
        await fleet.send_request("fleet-cap-2")

        async def refused() -> bool:
            return (await control.op_stats("StartWebRTCContact"))["concurrency_limited"] >= 1

        await eventually(refused, message="fleet-cap-2 at the capacity gate")
        await fleet.send_cancel("fleet-cap-2")
        final = await eventually(lambda: final_of(fleet.holder_sink, "fleet-cap-2"))
        await fleet.send_cancel("fleet-cap-1")
        await eventually(lambda: final_of(fleet.holder_sink, "fleet-cap-1"))

    assert (final.type, final.data["stage"]) == (EventType.CANCELLED, "before_start")
    assert (await control.op_stats("StartWebRTCContact"))["successes"] == 1


async def test_a_cancel_is_held_unacknowledged_while_redis_is_unreachable(
    three_workers: ThreeWorkers, redis_server: RedisServer, sqs_client: SQSClient
) -> None:
    async with three_workers() as (fleet, _):
        redis_server.kill()
        await fleet.send_cancel("fleet-down-1")

        async def held() -> bool:
            return await queue_counts(sqs_client, fleet.cancels) == (0, 1)

        await eventually(held, message="the cancel received and held")
        assert counted(fleet.others, "unknown") == 0  # not recorded, not counted
        redis_server.start()
        await eventually(lambda: counted(fleet.others, "unknown") == 1, within=30)

        async def acknowledged() -> bool:
            return await queue_counts(sqs_client, fleet.cancels) == (0, 0)

        await eventually(acknowledged, message="the cancel acknowledged once recorded")
        received = sum(
            w.metrics.value("orchestrator_messages_received_total") for w in fleet.others
        )

    assert received == 1  # tried again in place: no receive spent on the outage
