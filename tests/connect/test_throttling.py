"""Throttling storms: many requests against quotas far below demand, over real HTTP in real time.

The emulator enforces the account's quotas as token buckets; the engine's `RateBudget` must keep
the 429s rare. With the default quotas in the client and much lower quotas in the emulator, only
the budget's AIMD adaptation (halve on a 429, at most once per second; recover linearly over
30 s) keeps them rare. With the same quotas on both sides, the 3% headroom keeps them at zero.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from orchestrator.connect.gateway import DESCRIBE, SCREEN_SHARING, START
from orchestrator.connect.operations import Quota as ClientQuota
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.lifecycle import LifecycleEngine
from orchestrator.engine.watch import WatchPolicy
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl, Quota
from tests.support.engine import call_request, finals, make_engine
from tests.support.peers import ClientFactory

Starter = Callable[..., Any]

#: Far below the client's defaults (StartWebRTCContact 2/s burst 5, DescribeContact 10/s
#: burst 15, StartScreenSharing 2/s burst 5).
STORM_QUOTAS = {
    START: Quota(rate=1.5, burst=2.0),
    DESCRIBE: Quota(rate=2.0, burst=2.0),
    SCREEN_SHARING: Quota(rate=1.5, burst=2.0),
}
STORM_WATCH = WatchPolicy(
    first_delay_s=0.3, multiplier=1.5, max_interval_s=1.0, max_wait_s=60.0, jitter=0.25
)
GOOD_FINALS = {EventType.SCREEN_SHARING_STARTED}


async def run_storm(engine: LifecycleEngine, count: int) -> dict[str, LifecycleEvent]:
    results: dict[str, LifecycleEvent] = {}

    async def run(request_id: str) -> None:
        results[request_id] = await engine.run(call_request(request_id))

    async with anyio.create_task_group() as tg:
        for index in range(count):
            tg.start_soon(run, f"storm-{index:02d}")
    return results


async def storm_emulator(start_emulator: Starter) -> Emulator:
    emulator: Emulator = await start_emulator(
        quotas=dict(STORM_QUOTAS),
        agent_delay_s=(0.2, 0.5),
        talk_time_s=(120.0, 120.0),
        max_concurrent_calls=None,
    )
    return emulator


def throttle_counts(operations: dict[str, dict[str, int]]) -> tuple[int, int]:
    """(429 answers, calls) over every operation, as the emulator counted them."""
    throttled = sum(stats["throttled"] for stats in operations.values())
    calls = sum(stats["calls"] for stats in operations.values())
    return throttled, calls


async def test_storm_with_default_budget_adapts_and_keeps_429s_rare(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator = await storm_emulator(start_emulator)
    sink = MemorySink()
    budget = RateBudget()  # Connect's default quotas: the client has to find the real ones
    engine = make_engine(await client_for(emulator), sink, watch=STORM_WATCH, budget=budget)

    with anyio.fail_after(30):
        results = await run_storm(engine, 20)

    assert {r.type for r in results.values()} == GOOD_FINALS
    assert len(finals(sink.events)) == 20
    operations = (await EmulatorControl(emulator.url).stats())["operations"]
    assert operations[START]["successes"] == operations[SCREEN_SHARING]["successes"] == 20
    # Measured: 8-9 429s in 75-76 calls (StartWebRTCContact 3, DescribeContact 5,
    # StartScreenSharing 0-1). The bound: the first instant can lose at most the difference of
    # the bursts (5 - 2 = 3 starts); after a 429 the bucket drops its tokens and halves its rate
    # (at most once a second) until it is under the quota, then needs several seconds of linear
    # recovery (9.5% of the target per 3 s) to overshoot again, so a 15 s storm sees only a
    # few more. Without adaptation every call beyond the quota would be refused and retried.
    throttled, calls = throttle_counts(operations)
    assert throttled <= 0.2 * calls, operations
    assert operations[START]["throttled"] <= 5
    describe = budget[DESCRIBE]
    assert describe.throttles >= 1
    assert describe.rate < describe.target_rate  # still recovering: it really adapted


async def test_storm_with_matching_budget_gets_almost_no_429s(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator = await storm_emulator(start_emulator)
    sink = MemorySink()
    budget = RateBudget({op: ClientQuota(q.rate, q.burst) for op, q in STORM_QUOTAS.items()})
    engine = make_engine(await client_for(emulator), sink, watch=STORM_WATCH, budget=budget)

    with anyio.fail_after(30):
        results = await run_storm(engine, 10)

    assert {r.type for r in results.values()} == GOOD_FINALS
    operations = (await EmulatorControl(emulator.url).stats())["operations"]
    # Measured: one 429, always on the third StartWebRTCContact. The budget grants the burst
    # of two at once, but they open new connections and reach the emulator 30 and 69 ms later;
    # the third arrives on time 0.69 s after the grant, when the emulator's bucket has refilled
    # to 0.99 of a token: the 3% headroom (20 ms at 1.5/s) cannot absorb the skew of a cold
    # start. DescribeContact and StartScreenSharing: 0.
    throttled, _ = throttle_counts(operations)
    assert throttled <= 2, operations
