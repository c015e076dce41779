"""Retry policies: what is retried, how long, how often, and what each scheduled retry logs."""

from __future__ import annotations

import random

import pytest
from structlog.testing import capture_logs

from orchestrator.errors import (
    CapacityError,
    ConnectError,
    RetryableConnectError,
    TerminalConnectError,
    ThrottledError,
)
from orchestrator.retry import RetryPolicy
from tests.support.clock import VirtualClock

OP = "DescribeContact"


def policy(**overrides: object) -> RetryPolicy:
    settings: dict[str, object] = {
        "retry_on": (RetryableConnectError, CapacityError),
        "max_attempts": 4,
        "max_time_s": 60.0,
        "initial_s": 1.0,
        "max_backoff_s": 8.0,
        "rng": random.Random(42),
    }
    settings.update(overrides)
    return RetryPolicy("test.policy", **settings)  # type: ignore[arg-type]


class Failing:
    """An operation that fails with `error` the first `times` calls, then returns "ok"."""

    def __init__(self, error: ConnectError, times: int = 10**9) -> None:
        self.error = error
        self.times = times
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        return "ok"


async def test_transient_failures_are_retried_until_success() -> None:
    clock = VirtualClock()
    operation = Failing(RetryableConnectError(OP, "InternalServiceException", "boom"), times=2)

    result = await policy().call(operation, clock=clock)

    assert result == "ok"
    assert operation.calls == 3
    assert len(clock.slept) == 2


async def test_attempts_are_bounded_and_the_last_error_is_raised_as_is() -> None:
    clock = VirtualClock()
    error = RetryableConnectError(OP, "InternalServiceException", "boom")
    operation = Failing(error)

    with pytest.raises(RetryableConnectError) as info:
        await policy(max_attempts=4).call(operation, clock=clock)

    assert info.value is error
    assert operation.calls == 4
    assert len(clock.slept) == 3


async def test_total_time_is_bounded_even_when_attempts_remain() -> None:
    clock = VirtualClock()
    operation = Failing(RetryableConnectError(OP, "InternalServiceException", "boom"))
    bounded = policy(max_attempts=1000, max_time_s=10.0, initial_s=2.0, max_backoff_s=2.0)

    with pytest.raises(RetryableConnectError):
        await bounded.call(operation, clock=clock)

    # It stops at the first failure at or after 10 s; the last wait is at most one backoff.
    assert 10.0 <= clock.monotonic() < 12.0
    assert operation.calls < 1000


async def test_non_retryable_errors_are_raised_at_once() -> None:
    clock = VirtualClock()
    operation = Failing(TerminalConnectError(OP, "AccessDeniedException", "no"))

    with pytest.raises(TerminalConnectError):
        await policy().call(operation, clock=clock)

    assert operation.calls == 1
    assert clock.slept == []


async def test_throttles_are_bounded_by_time_only() -> None:
    clock = VirtualClock()
    operation = Failing(ThrottledError(OP, "ThrottlingException", "Rate exceeded"))
    throttled = policy(max_attempts=2, max_time_s=5.0, initial_s=0.5)

    with pytest.raises(ThrottledError):
        await throttled.call(operation, clock=clock)

    assert operation.calls > 2
    assert 5.0 <= clock.monotonic() < 5.5
    # The rate budget paces throttled calls: the policy itself adds at most `initial_s`.
    assert all(0.0 <= s <= 0.5 for s in clock.slept)


async def test_capacity_waits_are_long_and_bounded_by_the_capacity_time_only() -> None:
    clock = VirtualClock()
    operation = Failing(CapacityError("StartWebRTCContact", "LimitExceededException", "full"))
    capacity = policy(
        max_attempts=2,
        max_time_s=1.0,
        capacity_initial_s=2.0,
        capacity_max_backoff_s=8.0,
        capacity_max_time_s=60.0,
    )

    with pytest.raises(CapacityError):
        await capacity.call(operation, clock=clock)

    assert operation.calls > 2
    assert 60.0 <= clock.monotonic() < 68.0
    ceilings = [min(8.0, 2.0 * 2**n) for n in range(len(clock.slept))]
    assert all(c / 2 <= s <= c for s, c in zip(clock.slept, ceilings, strict=True))


def test_backoff_is_full_jitter_under_an_exponential_capped_ceiling() -> None:
    jittered = policy(initial_s=0.5, max_backoff_s=3.0, rng=random.Random(1))
    transient = RetryableConnectError(OP, "InternalServiceException", "boom")

    for attempt in range(1, 12):
        ceiling = min(3.0, 0.5 * 2 ** (attempt - 1))
        samples = [jittered.backoff(attempt, transient) for _ in range(200)]
        assert all(0.0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # really spread over the range


async def test_every_scheduled_retry_is_logged_with_policy_attempt_error_and_context() -> None:
    clock = VirtualClock()
    operation = Failing(RetryableConnectError(OP, "InternalServiceException", "boom"), times=2)

    with capture_logs() as logs:
        await policy().call(operation, clock=clock, context={"contact_id": "c-1"})

    scheduled = [entry for entry in logs if entry["event"] == "retry.scheduled"]
    assert [entry["attempt"] for entry in scheduled] == [1, 2]
    for entry, slept in zip(scheduled, clock.slept, strict=True):
        assert entry["log_level"] == "warning"
        assert entry["policy"] == "test.policy"
        assert entry["error"] == "InternalServiceException"
        assert entry["contact_id"] == "c-1"
        assert entry["sleep_s"] == round(slept, 3)


async def test_errors_without_a_code_are_logged_by_class_name() -> None:
    clock = VirtualClock()
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TimeoutError
        return calls

    with capture_logs() as logs:
        result = await policy(retry_on=(TimeoutError,)).call(flaky, clock=clock)

    assert result == 2
    assert [entry["error"] for entry in logs] == ["TimeoutError"]
