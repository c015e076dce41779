"""The adaptive token bucket and the rate budget, on virtual time."""

from __future__ import annotations

import anyio
import pytest

from orchestrator.connect.operations import DEFAULT_QUOTAS, Operation, Quota
from orchestrator.connect.ratelimit import AdaptiveTokenBucket, RateBudget
from orchestrator.waiters import Priority
from tests.support.clock import SteppingClock, VirtualClock
from tests.support.engine import settle


async def test_bucket_grants_its_burst_at_once_then_paces_at_its_rate() -> None:
    clock = VirtualClock()
    bucket = AdaptiveTokenBucket("op", rate=2.0, burst=3.0, clock=clock)

    for _ in range(3):
        await bucket.acquire()
    assert clock.slept == []

    for _ in range(4):
        await bucket.acquire()

    assert clock.slept == [0.5, 0.5, 0.5, 0.5]
    assert clock.monotonic() == pytest.approx(2.0)
    assert bucket.granted == 7


async def test_saved_tokens_never_exceed_the_burst() -> None:
    clock = VirtualClock()
    bucket = AdaptiveTokenBucket("op", rate=2.0, burst=3.0, clock=clock)
    await bucket.acquire()

    clock.advance(3600)

    assert bucket.tokens == 3.0


def test_throttle_halves_the_rate_drops_saved_tokens_and_recovers_linearly() -> None:
    clock = VirtualClock()
    bucket = AdaptiveTokenBucket(
        "op", rate=10.0, burst=10.0, clock=clock, recovery_s=30.0, cooldown_s=1.0
    )

    bucket.on_throttle()

    assert bucket.rate == 5.0
    assert bucket.tokens == 0.0
    # Recovery climbs from the floor (5% of 10) to 10 in 30 s: 9.5 / 30 per second.
    clock.advance(15.0)
    assert bucket.rate == pytest.approx(5.0 + 15.0 * 9.5 / 30.0)
    clock.advance(60.0)
    assert bucket.rate == 10.0


def test_throttles_within_the_cooldown_decrease_the_rate_once() -> None:
    clock = VirtualClock()
    bucket = AdaptiveTokenBucket("op", rate=8.0, burst=8.0, clock=clock, cooldown_s=1.0)

    for _ in range(5):
        bucket.on_throttle()
    assert bucket.rate == 4.0
    assert bucket.throttles == 5

    clock.advance(1.0)
    bucket.on_throttle()

    recovered = 4.0 + 1.0 * (8.0 - 0.4) / 30.0
    assert bucket.rate == pytest.approx(recovered / 2)


def test_repeated_throttles_never_push_the_rate_below_its_floor() -> None:
    clock = VirtualClock()
    bucket = AdaptiveTokenBucket("op", rate=10.0, burst=10.0, clock=clock, recovery_s=1e9)

    for _ in range(20):
        bucket.on_throttle()
        clock.advance(1.0)

    assert bucket.rate == pytest.approx(0.5, rel=1e-6)


async def test_waiters_are_served_lowest_priority_first_then_in_arrival_order() -> None:
    clock = SteppingClock()
    bucket = AdaptiveTokenBucket("op", rate=1.0, burst=1.0, clock=clock)
    await bucket.acquire()
    served: list[str] = []

    async def waiter(name: str, priority: float) -> None:
        await bucket.acquire(priority)
        served.append(name)

    async with anyio.create_task_group() as tg:
        arrivals = (("p3", 3.0), ("p1-first", 1.0), ("p2", 2.0), ("p1-second", 1.0))
        for queued, (name, priority) in enumerate(arrivals, start=1):
            tg.start_soon(waiter, name, priority)
            await settle(lambda: bucket.waiting == queued)  # noqa: B023 (awaited at once)
        assert served == []

        for count in range(1, 5):
            clock.advance(1.0)
            await settle(lambda: len(served) == count)  # noqa: B023 (awaited at once)
            assert bucket.waiting == 4 - count

    assert served == ["p1-first", "p1-second", "p2", "p3"]


async def test_a_waiter_whose_priority_is_lowered_moves_ahead_of_the_queue_it_waits_in() -> None:
    clock = SteppingClock()
    bucket = AdaptiveTokenBucket("op", rate=1.0, burst=1.0, clock=clock)
    await bucket.acquire()
    served: list[str] = []
    evented = Priority(3.0)

    async def waiter(name: str, priority: Priority | float) -> None:
        await bucket.acquire(priority)
        served.append(name)

    # Scheduled polls queued by enqueue time; the youngest one's contact gets an event.
    polls: list[tuple[str, Priority | float]] = [
        ("oldest", 1.0),
        ("older", 2.0),
        ("evented", evented),
    ]
    async with anyio.create_task_group() as tg:
        for queued, (name, priority) in enumerate(polls, start=1):
            tg.start_soon(waiter, name, priority)
            await settle(lambda: bucket.waiting == queued)  # noqa: B023 (awaited at once)
        evented.lower(0.0)
        evented.lower(5.0)  # never back
        await anyio.wait_all_tasks_blocked()
        assert bucket.waiting == 3  # it moved forward without leaving the queue
        for count in range(1, 4):
            clock.advance(1.0)
            await settle(lambda: len(served) == count)  # noqa: B023 (awaited at once)

    assert served == ["evented", "oldest", "older"]
    assert bucket.granted == 4  # no token lost on the way


async def test_lowering_a_priority_after_the_token_changes_nothing() -> None:
    bucket = AdaptiveTokenBucket("op", rate=1.0, burst=1.0, clock=SteppingClock())
    priority = Priority(5.0)

    await bucket.acquire(priority)  # a token at once
    priority.lower(0.0)

    assert priority.value == 0.0
    assert bucket.granted == 1
    assert bucket.waiting == 0


async def test_cancelled_waiters_neither_lose_a_token_nor_block_the_others() -> None:
    clock = SteppingClock()
    bucket = AdaptiveTokenBucket("op", rate=1.0, burst=1.0, clock=clock)
    await bucket.acquire()
    served: list[str] = []
    scopes: dict[str, anyio.CancelScope] = {}

    async def waiter(name: str, priority: float) -> None:
        with anyio.CancelScope() as scope:
            scopes[name] = scope
            await bucket.acquire(priority)
            served.append(name)

    async with anyio.create_task_group() as tg:
        for index, name in enumerate(("head", "middle", "tail")):
            tg.start_soon(waiter, name, float(index))
        await settle(lambda: bucket.waiting == 3)

        scopes["head"].cancel()  # the one sleeping for the next token
        scopes["middle"].cancel()  # one waiting behind it
        await settle(lambda: bucket.waiting == 1)

        clock.advance(1.0)
        await settle(lambda: served == ["tail"])

    assert bucket.granted == 2
    assert bucket.tokens == pytest.approx(0.0)
    # Nothing is left behind: the next caller after one more second goes straight through.
    clock.advance(1.0)
    with anyio.fail_after(1):
        await bucket.acquire()
    assert bucket.waiting == 0


async def test_throttle_makes_the_waiting_head_wait_at_the_new_rate() -> None:
    clock = VirtualClock()
    bucket = AdaptiveTokenBucket("op", rate=4.0, burst=4.0, clock=clock, recovery_s=1e9)

    bucket.on_throttle()
    await bucket.acquire()

    assert clock.slept == [pytest.approx(0.5)]  # one token at 2 per second


def test_bucket_refuses_a_non_positive_rate_or_a_burst_below_one() -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        AdaptiveTokenBucket("op", rate=0.0, burst=1.0)
    with pytest.raises(ValueError, match="burst >= 1"):
        AdaptiveTokenBucket("op", rate=1.0, burst=0.5)


def test_budget_spends_its_share_of_each_quota_with_headroom() -> None:
    budget = RateBudget(
        {
            Operation.DESCRIBE_CONTACT: Quota(10.0, 15.0),
            Operation.START_WEBRTC_CONTACT: Quota(2.0, 1.0),
        },
        share=0.5,
        headroom=0.1,
    )

    assert budget[Operation.DESCRIBE_CONTACT].target_rate == pytest.approx(4.5)
    # The burst keeps one token back for latency skew, and never drops below one token.
    assert budget[Operation.DESCRIBE_CONTACT].burst == 6.5
    assert budget[Operation.START_WEBRTC_CONTACT].burst == 1.0


def test_budget_defaults_to_connects_quotas_for_the_three_operations() -> None:
    budget = RateBudget()

    assert set(budget.buckets) == set(DEFAULT_QUOTAS)
    assert budget[Operation.START_WEBRTC_CONTACT].target_rate == pytest.approx(2.0 * 0.97)
    assert budget[Operation.DESCRIBE_CONTACT].burst == 14.0
    assert budget[Operation.START_WEBRTC_CONTACT].burst == 4.0


@pytest.mark.parametrize(("share", "headroom"), [(0.0, 0.0), (1.5, 0.0), (1.0, 1.0), (1.0, -0.1)])
def test_budget_refuses_shares_and_headrooms_out_of_range(share: float, headroom: float) -> None:
    with pytest.raises(ValueError, match="must be in"):
        RateBudget(share=share, headroom=headroom)
