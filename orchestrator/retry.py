"""Retry policies: one named policy per kind of call, built on tenacity.

Each policy says what is retryable (an explicit tuple of exception classes), bounds attempts *and*
total time, waits with full jitter (exponential, capped) and logs every scheduled retry. Throttles
are bounded by time only (the rate budget paces them); capacity errors (an instance at its
concurrent-call cap) get their own, much longer waits and time bound.

botocore's own retries are switched off for Connect (see `connect_client_config`): two retry
layers multiply, and the shared rate budget must see every attempt. SQS and the event sinks keep
botocore's standard mode (3 attempts) for connection blips and add these policies on top.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from orchestrator import tracing
from orchestrator.bounds import Bounded, declared
from orchestrator.clock import Clock, SystemClock
from orchestrator.errors import CapacityError, ThrottledError

log = structlog.get_logger("orchestrator.retry")

T = TypeVar("T")

#: Jitter as a range of fractions of the delay: none, or anywhere from 0 to all of it.
NO_JITTER = (1.0, 1.0)
FULL_JITTER = (0.0, 1.0)
_RNG = random.Random()
#: Which attempt of its policy's call the running code is (1 for the first): traces show it.
_ATTEMPT: ContextVar[int] = ContextVar("orchestrator_retry_attempt", default=1)


def current_attempt() -> int:
    """The attempt number of the `RetryPolicy.call` the caller runs inside (1 outside any)."""
    return _ATTEMPT.get()


def backoff_s(
    attempt: int,
    *,
    first_s: float,
    max_s: float,
    jitter: tuple[float, float] = NO_JITTER,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff, the one formula every retry loop uses: `first_s` doubled per attempt
    after the first (`attempt` counts from 1), capped at `max_s`, then scaled by a uniform draw
    from `jitter` (fractions of the delay; `(0.8, 1.0)` waits 80 to 100 % of it)."""
    exponent = min(max(attempt - 1, 0), 60)  # 2**60 is past any cap; more would overflow
    delay = min(max_s, first_s * 2.0**exponent)
    low, high = jitter
    if low == high:
        return delay * low
    return delay * (rng or _RNG).uniform(low, high)


@dataclass(frozen=True)
class RetryPolicy(Bounded):
    """Bounded, jittered exponential backoff for one kind of call."""

    name: str
    retry_on: tuple[type[BaseException], ...]
    max_attempts: int = declared(
        6,
        "Attempts of one call after transient errors (5xx, connection errors, timeouts), "
        "the first included. Throttles are bounded by time only (the rate budget paces them).",
        ge=1,
    )
    max_time_s: float = declared(
        60.0,
        "Seconds one call may spend retrying, whichever of the attempts and this ends first.",
        gt=0,
    )
    initial_s: float = 0.2
    max_backoff_s: float = 5.0
    #: Waits after a `CapacityError` (instance at its concurrent-call cap).
    capacity_initial_s: float = 2.0
    capacity_max_backoff_s: float = 30.0
    capacity_max_time_s: float = declared(
        600.0,
        "Seconds a call may keep retrying while the instance is at its concurrent-call cap "
        "(attempts are not bounded while it lasts).",
        gt=0,
    )
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def backoff(self, attempt: int, exc: BaseException | None) -> float:
        """Full jitter: uniform(0, min(cap, initial * 2**(attempt-1)))."""
        if isinstance(exc, ThrottledError):
            # The rate budget already slowed down and paces the next attempt.
            return self.rng.uniform(0.0, self.initial_s)
        if isinstance(exc, CapacityError):
            # Capacity frees up slowly: wait at least half the ceiling.
            return backoff_s(
                attempt,
                first_s=self.capacity_initial_s,
                max_s=self.capacity_max_backoff_s,
                jitter=(0.5, 1.0),
                rng=self.rng,
            )
        return backoff_s(
            attempt,
            first_s=self.initial_s,
            max_s=self.max_backoff_s,
            jitter=FULL_JITTER,
            rng=self.rng,
        )

    def exhausted(self, attempt: int, exc: BaseException | None, elapsed_s: float) -> bool:
        """Whether the budget is spent after `attempt` attempts, the last failing with `exc`."""
        if isinstance(exc, CapacityError):
            return elapsed_s >= self.capacity_max_time_s
        if isinstance(exc, ThrottledError):
            # Throttles are paced by the budget; only time bounds them.
            return elapsed_s >= self.max_time_s
        return attempt >= self.max_attempts or elapsed_s >= self.max_time_s

    def _scheduled(
        self,
        attempt: int,
        exc: BaseException | None,
        sleep_s: float,
        quiet: Callable[[], bool] | None = None,
        **extra: Any,
    ) -> None:
        error = getattr(exc, "code", type(exc).__name__)
        # While `quiet()` (an outage is declared and summarised elsewhere) a retry is a debug line.
        say = log.debug if quiet is not None and quiet() else log.warning
        say(
            "retry.scheduled",
            policy=self.name,
            attempt=attempt,
            sleep_s=round(sleep_s, 3),
            error=error,
            **extra,
        )
        tracing.add_event(
            "retry.scheduled",
            policy=self.name,
            attempt=attempt,
            sleep_s=round(sleep_s, 3),
            error=str(error),
        )

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        clock: Clock | None = None,
        context: dict[str, Any] | None = None,
        quiet: Callable[[], bool] | None = None,
    ) -> T:
        """Run `fn` until it succeeds, raises something not retryable, or the budget runs out.

        The last exception is re-raised as is when the budget runs out. The first attempt runs
        bare (most calls succeed at once); tenacity takes over from the first retryable failure.
        Each scheduled retry is a warning, or a debug line while `quiet()` holds.
        """
        clk = clock or SystemClock()
        started = clk.monotonic()
        extra = context or {}
        fn = _counted(fn)
        try:
            return await fn()
        except self.retry_on as exc:
            first: BaseException = exc
        if self.exhausted(1, first, clk.monotonic() - started):
            raise first
        pause = self.backoff(1, first)
        self._scheduled(1, first, pause, quiet, **extra)
        await clk.sleep(pause)

        def outcome(state: RetryCallState) -> BaseException | None:
            return state.outcome.exception() if state.outcome else None

        # tenacity counts its own attempts from 1; ours started with the bare one above.
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(self.retry_on),
            stop=lambda state: self.exhausted(
                state.attempt_number + 1, outcome(state), clk.monotonic() - started
            ),
            wait=lambda state: self.backoff(state.attempt_number + 1, outcome(state)),
            sleep=clk.sleep,
            before_sleep=lambda state: self._scheduled(
                state.attempt_number + 1, outcome(state), state.upcoming_sleep, quiet, **extra
            ),
            reraise=True,
        )
        result: T = await retrying(fn)
        return result


def _counted(fn: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
    """`fn`, with `current_attempt()` set to its attempt number while it runs."""
    attempts = 0

    async def attempt() -> T:
        nonlocal attempts
        attempts += 1
        token = _ATTEMPT.set(attempts)
        try:
            return await fn()
        finally:
            _ATTEMPT.reset(token)

    return attempt
