"""The GCRA script, evaluated by a real redis-server: rate, burst, waits, the shared ceiling."""

from __future__ import annotations

import time

import anyio
import pytest
from redis.asyncio import Redis

from orchestrator.daemon.fleet.gcra import Gcra, GcraLimit
from tests.support import eventually

pytestmark = pytest.mark.timeout(60)


async def test_a_budget_without_state_starts_with_one_call_then_builds_its_burst(
    redis: Redis,
) -> None:
    gcra, limit = Gcra(redis), GcraLimit(rate=20.0, burst=3.0)
    first, second = [await gcra.acquire("t:burst", limit) for _ in range(2)]
    assert first.granted and not second.granted
    assert 0 < second.wait_s <= 0.05
    await anyio.sleep(0.2)  # more than a full burst's worth (3 / 20 s)
    decisions = [await gcra.acquire("t:burst", limit) for _ in range(4)]
    assert [d.granted for d in decisions] == [True, True, True, False]
    assert [round(d.tokens) for d in decisions[:3]] == [2, 1, 0]
    assert 0 < decisions[3].wait_s <= 0.05
    assert decisions[3].factor == 1.0


async def test_waiting_the_answered_time_is_enough(redis: Redis) -> None:
    gcra, limit = Gcra(redis), GcraLimit(rate=20.0, burst=1.0)
    assert (await gcra.acquire("t:wait", limit)).granted
    refused = await gcra.acquire("t:wait", limit)
    assert not refused.granted
    await anyio.sleep(refused.wait_s + 0.002)
    assert (await gcra.acquire("t:wait", limit)).granted


async def test_grants_over_a_window_never_exceed_rate_times_window_plus_burst(
    redis: Redis,
) -> None:
    gcra, limit = Gcra(redis), GcraLimit(rate=25.0, burst=2.0)
    granted, start = 0, time.monotonic()
    while (elapsed := time.monotonic() - start) < 1.0:
        decision = await gcra.acquire("t:window", limit)
        if decision.granted:
            granted += 1
        else:
            await anyio.sleep(decision.wait_s)
    assert granted <= 25.0 * elapsed + 2.0
    assert granted >= 25.0 * 0.8  # and the waits do not starve it


async def test_the_state_is_kept_on_the_server_clock(redis: Redis) -> None:
    gcra, limit = Gcra(redis), GcraLimit(rate=1.0, burst=1.0)
    await gcra.acquire("t:clock", limit)
    seconds, micros = await redis.time()
    server_now_us = seconds * 1_000_000 + micros
    tat = int(await redis.hget("t:clock", "tat") or 0)
    # The next call is due one interval after the grant, measured on the server's clock.
    assert 0.9e6 <= tat - server_now_us + 0.1e6 <= 1.1e6
    ttl_ms = await redis.pttl("t:clock")
    assert 0 < ttl_ms <= limit.ttl_ms


async def test_concurrent_throttles_lower_the_ceiling_once(redis: Redis) -> None:
    gcra, limit = Gcra(redis), GcraLimit(rate=10.0, burst=5.0, cooldown_s=5.0)
    results: list[bool] = []

    async def report() -> None:
        results.append(await gcra.throttled("t:ceiling", limit))

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(report)
    assert sorted(results) == [False] * 11 + [True]
    decision = await gcra.acquire("t:ceiling", limit)
    assert decision.factor == pytest.approx(0.5, abs=0.02)


async def test_a_throttle_forgets_the_saved_burst(redis: Redis) -> None:
    gcra, limit = Gcra(redis), GcraLimit(rate=10.0, burst=5.0)
    assert await gcra.throttled("t:forget", limit)
    decision = await gcra.acquire("t:forget", limit)
    assert not decision.granted
    # At the halved rate (5/s) the next call is one interval (0.2 s) away.
    assert 0.1 < decision.wait_s <= 0.2


async def test_the_ceiling_recovers_linearly_and_lowers_again_after_the_cooldown(
    redis: Redis,
) -> None:
    limit = GcraLimit(rate=10.0, burst=5.0, recovery_s=2.0, cooldown_s=0.2, min_factor=0.01)
    gcra = Gcra(redis)
    before = time.monotonic()
    assert await gcra.throttled("t:recover", limit)
    await eventually(lambda: time.monotonic() - before >= 0.5, message="half a second to pass")
    halfway = (await gcra.acquire("t:recover", limit)).factor
    elapsed = time.monotonic() - before
    # From 0.5 up by (1 - floor) / recovery_s a second: 0.5 + 0.99 * t / 2 after t seconds (on
    # the server's clock, which a loaded machine may reach later than half a second).
    assert 0.5 + 0.495 * 0.45 <= halfway <= min(1.0, 0.5 + 0.495 * elapsed + 0.02)
    assert await gcra.throttled("t:recover", limit)  # cooldown over: lowers again, from there
    lowered = (await gcra.acquire("t:recover", limit)).factor
    assert lowered == pytest.approx(halfway / 2, abs=0.05)
    started = time.monotonic()

    async def recovered() -> bool:
        return (await gcra.acquire("t:recover", limit)).factor == 1.0

    await eventually(recovered, within=5, message="the ceiling to recover")
    assert time.monotonic() - started >= 0.9  # (1 - 0.37) / 0.495 per s: about 1.3 s


async def test_the_ceiling_never_drops_below_its_floor(redis: Redis) -> None:
    limit = GcraLimit(rate=10.0, burst=1.0, cooldown_s=0.001, min_factor=0.2)
    gcra = Gcra(redis)
    for _ in range(6):
        await gcra.throttled("t:floor", limit)
        await anyio.sleep(0.005)
    assert (await gcra.acquire("t:floor", limit)).factor == pytest.approx(0.2, abs=0.01)


def test_a_limit_needs_a_positive_rate_and_a_burst_of_one() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        GcraLimit(rate=0.0, burst=1.0)
    with pytest.raises(ValueError, match="burst >= 1"):
        GcraLimit(rate=1.0, burst=0.5)
    with pytest.raises(ValueError, match="min_factor"):
        GcraLimit(rate=1.0, burst=1.0, min_factor=0.0)
