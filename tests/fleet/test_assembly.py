"""`[fleet] redis_url` turns fleet mode on in an assembled worker: heartbeats, the shared budget,
and contact events fanned out; without it nothing touches Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest
from redis.asyncio import Redis

from orchestrator.daemon.assembly import open_worker
from orchestrator.metrics import Metrics
from orchestrator.testing.emulator import Emulator, EmulatorControl
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.queues import create_queue, create_queue_with_dlq, send_all
from orchestrator.testing.redis import RedisServer
from orchestrator.testing.requests import request_body
from tests.support import eventually, settings_for

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(60)

PREFIX = "orchestrator:us-east-1"


async def test_a_fleet_worker_heartbeats_subscribes_and_spends_the_shared_budget(
    emulator: Emulator,
    sqs_server: LocalSqsServer,
    sqs_client: SQSClient,
    redis_server: RedisServer,
    redis: Redis,
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    contact_events = await create_queue(sqs_client)
    settings = settings_for(
        emulator.url,
        sqs_server.url,
        queue,
        fleet={"redis_url": redis_server.url, "heartbeat_interval_s": 0.2},
        contact_events={"queue_url": contact_events},
    )
    metrics = Metrics()
    async with open_worker(settings, metrics=metrics) as worker, anyio.create_task_group() as tg:
        tg.start_soon(worker.run)

        async def joined() -> bool:
            members = await redis.zrange(f"{PREFIX}:workers", 0, -1)
            subscribed = await redis.pubsub_numsub(f"{PREFIX}:contact-events")
            return len(members) == 1 and subscribed[0][1] == 1

        await eventually(joined, within=10, message="the heartbeat and the subscriber")
        await send_all(sqs_client, queue, [request_body("fleet-assembly-1")])
        control = EmulatorControl(emulator.url)

        async def started() -> bool:
            return len(await control.contacts()) == 1

        await eventually(started, within=20, message="the contact to start")
        assert await redis.exists(f"{PREFIX}:quota:StartWebRTCContact")
        assert metrics.registry.get_sample_value("orchestrator_fleet_workers_seen") == 1
        assert metrics.registry.get_sample_value("orchestrator_fleet_degraded") == 0
        worker.stop()
    assert await redis.zcard(f"{PREFIX}:workers") == 0  # it left the fleet on the way out


async def test_without_a_redis_url_the_worker_never_touches_redis(
    emulator: Emulator,
    sqs_server: LocalSqsServer,
    sqs_client: SQSClient,
    redis_server: RedisServer,
    redis: Redis,
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    settings = settings_for(emulator.url, sqs_server.url, queue)
    async with open_worker(settings) as worker, anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await send_all(sqs_client, queue, [request_body("local-1")])
        control = EmulatorControl(emulator.url)

        async def started() -> bool:
            return len(await control.contacts()) == 1

        await eventually(started, within=20, message="the contact to start")
        worker.stop()
    assert await redis.dbsize() == 0
