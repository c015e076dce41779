"""The fleet bucket honours a priority lowered while its caller waits (a queued poll that a
contact event turns into the confirmation), against a real redis-server."""

from __future__ import annotations

import anyio
import pytest
from redis.asyncio import Redis

from orchestrator.connect.operations import Operation, Quota
from orchestrator.daemon.fleet.breaker import Breaker
from orchestrator.daemon.fleet.budget import FleetBudget
from orchestrator.daemon.fleet.policy import FleetPolicy
from orchestrator.metrics import Metrics
from orchestrator.waiters import Priority
from tests.support import eventually
from tests.support.clock import SteppingClock

pytestmark = pytest.mark.timeout(60)

DESCRIBE = Operation.DESCRIBE_CONTACT


async def test_a_lowered_priority_moves_a_waiter_ahead_in_the_fleet_bucket(redis: Redis) -> None:
    # The waits Redis asks for are slept on this clock: the turn's holder waits for the test.
    clock = SteppingClock()
    policy = FleetPolicy()
    breaker = Breaker(policy, metrics=Metrics())
    budget = FleetBudget(
        redis, {DESCRIBE: Quota(2.0, 2.0)}, prefix="t", policy=policy, breaker=breaker,
        headroom=0, clock=clock,
    )  # fmt: skip
    bucket = budget[DESCRIBE]
    await bucket.acquire()  # the burst (2 - 1)
    served: list[str] = []
    evented = Priority(3.0)

    async def call(name: str, priority: Priority | float) -> None:
        await bucket.acquire(priority)
        served.append(name)

    def advanced() -> bool:
        clock.advance(1.0)
        return len(served) == 4

    polls: list[tuple[str, Priority | float]] = [("older", 1.0), ("old", 2.0), ("evented", evented)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "first", 0.0)  # takes the turn, waits for Redis's next slot
        await eventually(lambda: clock.sleeping == 1, within=5)
        for name, priority in polls:
            tg.start_soon(call, name, priority)
        await eventually(lambda: bucket.snapshot()[2] == 4, within=5)
        evented.lower(0.0)
        await eventually(advanced, within=20)

    assert served == ["first", "evented", "older", "old"]
    assert bucket.granted == 5
