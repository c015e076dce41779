"""Contact events fan out through a real redis-server: one worker reads, every worker hears."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import pytest
from redis.asyncio import Redis

from orchestrator.daemon.fleet import FleetContactEvents, redis_client
from orchestrator.daemon.fleet.breaker import Breaker
from orchestrator.daemon.fleet.policy import FleetPolicy
from orchestrator.engine.contact_events import ContactEvent
from orchestrator.metrics import Metrics
from orchestrator.testing.redis import RedisServer
from tests.support import eventually

pytestmark = pytest.mark.timeout(60)

CHANNEL = "orchestrator:us-east-1:contact-events"


class Recorder:
    """A local sink (the port's test double): what it was given, in order."""

    def __init__(self) -> None:
        self.events: list[ContactEvent] = []

    async def deliver(self, event: ContactEvent) -> None:
        self.events.append(event)


def event(n: int) -> ContactEvent:
    return ContactEvent(f"ev-{n}", f"contact-{n}", "CONNECTED_TO_AGENT", "2026-12-02T10:00:00Z")


def fan_out(client: Redis, worker_id: str) -> tuple[FleetContactEvents, Recorder]:
    local = Recorder()
    sink = FleetContactEvents(
        client,
        local,
        channel=CHANNEL,
        worker_id=worker_id,
        breaker=Breaker(FleetPolicy(breaker_failures=1, breaker_reset_s=0.2), metrics=Metrics()),
        resubscribe_s=0.1,
    )
    return sink, local


async def subscribers(redis: Redis) -> int:
    counts = await redis.pubsub_numsub(CHANNEL)
    return int(counts[0][1])


async def subscribed(redis: Redis, workers: int) -> bool:
    return await subscribers(redis) == workers


@contextlib.asynccontextmanager
async def two_workers(
    url: str, redis: Redis
) -> AsyncIterator[tuple[FleetContactEvents, Recorder, FleetContactEvents, Recorder]]:
    """Workers "a" and "b", each with its own client and local sink, both subscribed."""
    async with (
        redis_client(url) as client_a,
        redis_client(url) as client_b,
        anyio.create_task_group() as tg,
    ):
        a, local_a = fan_out(client_a, "a")
        b, local_b = fan_out(client_b, "b")
        tg.start_soon(a.run)
        tg.start_soon(b.run)
        await eventually(lambda: subscribed(redis, 2), within=10)
        yield a, local_a, b, local_b
        tg.cancel_scope.cancel()


async def test_an_event_read_by_one_worker_reaches_every_workers_local_sink(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with two_workers(redis_server.url, redis) as (a, local_a, b, local_b):
        await a.deliver(event(1))
        await b.deliver(event(2))
        await eventually(lambda: len(local_a.events) == 2 and len(local_b.events) == 2, within=10)
    # Each worker hears each event once: its own directly, the other's through Redis.
    assert local_a.events == [event(1), event(2)]
    assert local_b.events == [event(2), event(1)]


async def test_without_redis_events_still_wake_the_local_watches_and_fan_out_again_after(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with two_workers(redis_server.url, redis) as (a, local_a, _, local_b):
        redis_server.kill()
        await a.deliver(event(1))  # Redis is gone: local only, no error
        assert local_a.events == [event(1)]

        redis_server.start()
        await eventually(lambda: subscribed(redis, 2), within=15)

        async def fanned_out() -> bool:
            await a.deliver(event(2))  # the breaker may still be open: deliver until it is not
            return event(2) in local_b.events

        await eventually(fanned_out, within=10, message="fan-out to resume")
    assert event(1) not in local_b.events  # published while Redis was away: polling covers it


async def test_an_unreadable_message_on_the_channel_is_skipped(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with redis_client(redis_server.url) as client, anyio.create_task_group() as tg:
        sink, local = fan_out(client, "a")
        tg.start_soon(sink.run)
        await eventually(lambda: subscribed(redis, 1), within=10)
        await redis.publish(CHANNEL, b"not json")
        await redis.publish(CHANNEL, b'{"origin": "z", "event": "{}"}')
        other = FleetContactEvents(
            redis,
            Recorder(),
            channel=CHANNEL,
            worker_id="z",
            breaker=Breaker(FleetPolicy(), metrics=Metrics()),
        )
        await other.deliver(event(3))
        await eventually(lambda: local.events == [event(3)], within=10)
        tg.cancel_scope.cancel()
