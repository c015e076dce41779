"""In fleet mode, GetContactMetrics is paid from the fleet's shared budget like every other
Connect operation: one account quota for every replica."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest
from redis.asyncio import Redis

from orchestrator.daemon.assembly import open_worker
from orchestrator.engine.events import EventType
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.queues import create_queue_with_dlq, send_all
from orchestrator.testing.redis import RedisServer
from orchestrator.testing.requests import request_body
from tests.support import eventually, settings_for

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(60)

PREFIX = "orchestrator:us-east-1"


async def test_a_fleet_worker_asks_positions_from_the_shared_budget(
    start_emulator: Any,
    sqs_server: LocalSqsServer,
    sqs_client: SQSClient,
    redis_server: RedisServer,
    redis: Redis,
) -> None:
    # One agent busy with another application's long call: our contact waits, second in line.
    emulator: Emulator = await start_emulator(
        agents=1,
        handle_time_s=(600.0, 600.0),
        patience_s=(600.0, 600.0),
        background_contacts=2,
    )
    queue, _ = await create_queue_with_dlq(sqs_client)
    settings = settings_for(
        emulator.url, sqs_server.url, queue, fleet={"redis_url": redis_server.url}
    )
    sink = MemorySink()
    async with (
        open_worker(settings, extra_sinks=[sink]) as worker,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(worker.run)
        await send_all(sqs_client, queue, [request_body("fleet-position-1")])
        told = await eventually(
            lambda: [e for e in sink.events if e.type is EventType.QUEUE_POSITION],
            within=30,
            message="a position",
        )
        assert told[0].data["position"] == 2
        assert await redis.exists(f"{PREFIX}:quota:GetContactMetrics")
        await EmulatorControl(emulator.url).disconnect(told[0].contact_id or "")
        await eventually(lambda: any(e.final for e in sink.events), within=30)
        worker.stop()
