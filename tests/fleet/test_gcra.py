"""The GCRA script, evaluated by a real redis-server: rate, burst, waits, the shared ceiling.

Time is the test's (`Gcra(redis, now=clock.time)`): it moves when the test says, so no test
sleeps. One test checks that production decides on the server's own clock.
"""

from __future__ import annotations

import anyio
import pytest
from redis.asyncio import Redis

from orchestrator.daemon.fleet.gcra import Gcra, GcraLimit
from tests.support import VirtualClock

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def gcra(redis: Redis, clock: VirtualClock) -> Gcra:
    return Gcra(redis, now=clock.time)


async def test_a_budget_without_state_starts_with_one_call_then_builds_its_burst(
    gcra: Gcra, clock: VirtualClock
) -> None:
    limit = GcraLimit(rate=20.0, burst=3.0)
    first, second = [await gcra.acquire("t:burst", limit) for _ in range(2)]
    assert first.granted and not second.granted
    assert second.wait_s == pytest.approx(0.05)
    clock.advance(0.2)  # more than a full burst's worth (3 / 20 s)
    decisions = [await gcra.acquire("t:burst", limit) for _ in range(4)]
    assert [d.granted for d in decisions] == [True, True, True, False]
    assert [round(d.tokens) for d in decisions[:3]] == [2, 1, 0]
    assert decisions[3].wait_s == pytest.approx(0.05)
    assert decisions[3].factor == 1.0


async def test_waiting_the_answered_time_is_enough_and_a_moment_less_is_not(
    gcra: Gcra, clock: VirtualClock
) -> None:
    limit = GcraLimit(rate=20.0, burst=1.0)
    assert (await gcra.acquire("t:wait", limit)).granted
    refused = await gcra.acquire("t:wait", limit)
    assert not refused.granted
    clock.advance(refused.wait_s - 0.001)
    almost = await gcra.acquire("t:wait", limit)
    assert not almost.granted and almost.wait_s == pytest.approx(0.001, abs=1e-5)
    clock.advance(almost.wait_s)
    assert (await gcra.acquire("t:wait", limit)).granted


async def test_grants_over_a_window_never_exceed_rate_times_window_plus_burst(
    gcra: Gcra, clock: VirtualClock
) -> None:
    limit = GcraLimit(rate=25.0, burst=2.0)
    clock.advance(1.0)  # a full burst saved up first
    await gcra.acquire("t:window", limit)
    granted, start = 0, clock.time()
    while clock.time() - start < 10.0:
        decision = await gcra.acquire("t:window", limit)
        if decision.granted:
            granted += 1
        else:
            clock.advance(decision.wait_s)
    elapsed = clock.time() - start
    assert granted <= 25.0 * elapsed + 2.0
    assert granted >= 25.0 * elapsed - 1.0  # waiting the answered time never starves it


async def test_production_decides_on_the_server_clock(redis: Redis) -> None:
    gcra, limit = Gcra(redis), GcraLimit(rate=1.0, burst=1.0)
    await gcra.acquire("t:clock", limit)
    seconds, micros = await redis.time()
    server_now_us = seconds * 1_000_000 + micros
    tat = int(await redis.hget("t:clock", "tat") or 0)
    # The next call is due one interval after the grant, measured on the server's clock.
    assert 0.9e6 <= tat - server_now_us + 0.1e6 <= 1.1e6
    ttl_ms = await redis.pttl("t:clock")
    assert 0 < ttl_ms <= limit.ttl_ms


async def test_concurrent_throttles_lower_the_ceiling_once(gcra: Gcra) -> None:
    limit = GcraLimit(rate=10.0, burst=5.0, cooldown_s=5.0)
    results: list[bool] = []

    async def report() -> None:
        results.append(await gcra.throttled("t:ceiling", limit))

    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(report)
    assert sorted(results) == [False] * 11 + [True]
    decision = await gcra.acquire("t:ceiling", limit)
    assert decision.factor == pytest.approx(0.5)


async def test_a_throttle_forgets_the_saved_burst(gcra: Gcra) -> None:
    limit = GcraLimit(rate=10.0, burst=5.0)
    assert await gcra.throttled("t:forget", limit)
    decision = await gcra.acquire("t:forget", limit)
    assert not decision.granted
    # At the halved rate (5/s) the next call is one interval (0.2 s) away.
    assert decision.wait_s == pytest.approx(0.2)


async def test_the_ceiling_recovers_linearly_and_lowers_again_after_the_cooldown(
    gcra: Gcra, clock: VirtualClock
) -> None:
    limit = GcraLimit(rate=10.0, burst=5.0, recovery_s=2.0, cooldown_s=0.2, min_factor=0.01)
    assert await gcra.throttled("t:recover", limit)
    clock.advance(0.1)
    assert not await gcra.throttled("t:recover", limit)  # within the cooldown: no second cut
    clock.advance(0.4)
    # From 0.5 up by (1 - floor) / recovery_s a second: 0.5 + 0.99 * 0.5 / 2 after 0.5 s.
    halfway = (await gcra.acquire("t:recover", limit)).factor
    assert halfway == pytest.approx(0.5 + 0.495 * 0.5)
    assert await gcra.throttled("t:recover", limit)  # cooldown over: lowers again, from there
    lowered = (await gcra.acquire("t:recover", limit)).factor
    assert lowered == pytest.approx(halfway / 2)
    # Back to 1 after (1 - lowered) / 0.495 seconds, not before.
    full_in = (1 - lowered) / 0.495
    clock.advance(full_in - 0.05)
    assert (await gcra.acquire("t:recover", limit)).factor < 1.0
    clock.advance(0.05)
    assert (await gcra.acquire("t:recover", limit)).factor == 1.0


async def test_the_ceiling_never_drops_below_its_floor(gcra: Gcra, clock: VirtualClock) -> None:
    limit = GcraLimit(rate=10.0, burst=1.0, cooldown_s=0.001, min_factor=0.2)
    for _ in range(6):
        assert await gcra.throttled("t:floor", limit)
        clock.advance(0.002)  # past the cooldown; recovery over 30 s adds almost nothing
    assert (await gcra.acquire("t:floor", limit)).factor == pytest.approx(0.2, abs=0.001)


def test_a_limit_needs_a_positive_rate_and_a_burst_of_one() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        GcraLimit(rate=0.0, burst=1.0)
    with pytest.raises(ValueError, match="burst >= 1"):
        GcraLimit(rate=1.0, burst=0.5)
    with pytest.raises(ValueError, match="min_factor"):
        GcraLimit(rate=1.0, burst=1.0, min_factor=0.0)
