"""The fleet budget through a Redis outage and its return, empty, against a real redis-server the
test kills and starts again: the fleet size last known is kept, the local shares add up to the
budget without bursts, and the shared budget resumes without a burst or a stale 429."""

from __future__ import annotations

import random

import pytest
from redis.asyncio import Redis

from orchestrator.testing.redis import RedisServer, free_port
from tests.fleet.members import (
    BURST,
    RATE,
    START,
    busiest_second,
    members,
    spend,
    spend_each,
)
from tests.support import VirtualClock, eventually

pytestmark = pytest.mark.timeout(60)

KEY = "orchestrator:us-east-1:quota:StartWebRTCContact"


async def test_the_fleet_size_is_kept_through_an_outage_longer_than_a_heartbeat_ttl(
    redis_server: RedisServer,
) -> None:
    clock = VirtualClock()
    ttl = 10.0
    async with members(
        redis_server.url, 3, clock=clock, heartbeat_ttl_s=ttl, breaker_failures=1
    ) as fleet:
        for member in fleet:
            await member.fleet.membership.beat()
        worker = fleet[0].fleet
        assert await worker.membership.beat() == 3
        assert worker.budget.workers == 3

        redis_server.kill()
        assert await worker.membership.beat() is None
        clock.advance(6 * ttl)  # an outage much longer than a heartbeat's TTL
        redis_server.start()  # empty: this worker's next beat sees only itself
        assert await worker.membership.beat() == 1
        assert worker.budget.workers == 3
        assert worker.budget[START].fallback.target_rate == pytest.approx(RATE / 3)

        clock.advance(ttl)  # a TTL later the set is the truth again (the others are gone)
        assert await worker.membership.beat() == 1
        assert worker.budget.workers == 1


async def test_through_an_outage_and_an_empty_redis_the_fleet_spends_its_budget_without_a_burst(
    redis_server: RedisServer,
) -> None:
    # Workers find Redis back up to a breaker_reset_s apart: long enough that a worker back on
    # an empty shared budget beside others still on their local shares would overspend.
    async with members(redis_server.url, 3, breaker_reset_s=1.0) as fleet:
        for _ in range(2):
            for member in fleet:
                await member.fleet.membership.beat()
        assert [m.fleet.budget.workers for m in fleet] == [3, 3, 3]
        await spend(fleet, 0.5)  # the shared budget, spent to its end

        redis_server.kill()
        # Each worker finds Redis gone at its own moment (the next one 0.4 s later), so each
        # finds it back at its own moment too.
        during: list[list[float]] = [[] for _ in fleet]
        spent = [0.0, 0.0, 0.0]
        for joined, seconds in ((1, 0.4), (2, 0.4), (3, 1.2)):
            for index, stamps in enumerate(await spend_each(fleet[:joined], seconds)):
                during[index] += stamps
                spent[index] += seconds
        # Each worker spends its local share of the fleet last known, without burst.
        for each, seconds in zip(during, spent, strict=True):
            assert len(each) <= RATE / 3 * seconds + 1, [len(e) for e in during]
        assert busiest_second([t for each in during for t in each]) <= RATE + BURST
        assert all(member.degraded == 1 for member in fleet)

        redis_server.start()  # the same port, empty: no budget state, no heartbeats
        after = await spend(fleet, 3.0)
        assert all(member.degraded == 0 for member in fleet)
    # The whole fleet was granted no more than its budget and one burst, over any second and
    # over the whole time since Redis came back.
    assert busiest_second(after) <= RATE + BURST + 1, after
    assert len(after) <= RATE * 3.0 + BURST + 1


async def test_a_429_on_the_local_share_is_not_reported_to_the_shared_budget_when_redis_returns(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with members(redis_server.url, 1) as (member,):
        bucket = member.fleet.budget[START]
        await bucket.acquire()
        redis_server.kill()
        await bucket.acquire()
        assert bucket.local
        bucket.on_throttle()  # Connect throttled a call of the local share
        redis_server.start()

        async def shared_again() -> bool:
            await bucket.acquire()
            return not bucket.local

        await eventually(shared_again, within=10, message="the shared budget to come back")
        assert float(await redis.hget(KEY, "factor") or 0) == 1.0

        # Once every worker is back (the handover is over), a 429 lowers the shared ceiling.
        await eventually(lambda: not bucket.paced(), within=10)
        bucket.on_throttle()
        await bucket.acquire()
        assert float(await redis.hget(KEY, "factor") or 0) == pytest.approx(0.5, abs=0.02)


async def test_workers_that_lose_redis_together_start_their_local_shares_empty_and_apart() -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens: refused at once
    firsts = []
    for seed in range(4):
        clock = VirtualClock(start=0.0)  # small numbers: a token's last 1e-16 s is not lost
        async with members(unreachable, 1, clock=clock, rng=random.Random(seed)) as (member,):
            member.fleet.budget.set_workers(6)
            began = clock.monotonic()
            await member.fleet.budget[START].acquire()
            firsts.append(clock.monotonic() - began)
    # No saved call (each waits), none waits longer than its interval, and no two call together.
    interval = 6 / RATE
    assert all(0 < first < interval for first in firsts), firsts
    assert len({round(first, 6) for first in firsts}) == len(firsts)
