"""The shared rate budget: one adaptive token bucket per Connect operation, per process.

Connect's quotas are per account and shared by every worker, so each worker spends a configured
share of them. A bucket hands out tokens at `rate` per second up to `burst`; callers wait for a
token instead of failing. Waiters are served by priority (lowest first, then arrival order), which
lets the watch spend a scarce DescribeContact budget on the contacts most likely to have changed;
a caller waiting with a `Priority` may lower it meanwhile (a contact event makes a queued poll
the confirmation) and moves forward without losing its place.

On a 429 the bucket halves its rate (multiplicative decrease, at most once per cooldown) and drops
its saved tokens; it then recovers linearly to the configured rate over `recovery_s`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from orchestrator import tracing
from orchestrator.clock import Clock, SystemClock
from orchestrator.connect.operations import DEFAULT_QUOTAS, BudgetShare, Operation, Quota
from orchestrator.waiters import Priority, Waiters


class AdaptiveTokenBucket:
    """A token bucket whose rate adapts to throttling. Safe for any number of concurrent waiters."""

    def __init__(
        self,
        name: str,
        rate: float,
        burst: float,
        *,
        clock: Clock | None = None,
        decrease_factor: float = 0.5,
        min_rate_fraction: float = 0.05,
        recovery_s: float = 30.0,
        cooldown_s: float = 1.0,
        tokens: float | None = None,
    ) -> None:
        """`tokens`: what the bucket starts with (a full `burst` unless said)."""
        if rate <= 0 or burst < 1:
            raise ValueError(f"{name}: rate must be > 0 and burst >= 1 (got {rate}/{burst})")
        self.name = name
        self.target_rate = rate
        self.burst = burst
        self._clock = clock or SystemClock()
        self._decrease = decrease_factor
        self._min_rate = rate * min_rate_fraction
        self._recovery_per_s = (rate - self._min_rate) / recovery_s if recovery_s > 0 else rate
        self._cooldown_s = cooldown_s
        self._rate = rate
        self._tokens = burst if tokens is None else min(burst, max(0.0, tokens))
        self._updated = self._clock.monotonic()
        self._last_decrease = float("-inf")
        self._waiters = Waiters()
        self.throttles = 0
        self.granted = 0

    # -- state -------------------------------------------------------------------------------

    def _refill(self) -> None:
        now = self._clock.monotonic()
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        if self._rate < self.target_rate:
            self._rate = min(self.target_rate, self._rate + elapsed * self._recovery_per_s)
        self._tokens = min(self.burst, self._tokens + elapsed * self._rate)

    @property
    def rate(self) -> float:
        """The current (adapted) rate in tokens per second."""
        self._refill()
        return self._rate

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def snapshot(self) -> tuple[float, float, int]:
        """(tokens, rate, waiters) now, without touching the bucket: safe from another thread
        (the metrics endpoint runs on its own)."""
        elapsed = max(0.0, self._clock.monotonic() - self._updated)
        rate = min(self.target_rate, self._rate + elapsed * self._recovery_per_s)
        tokens = min(self.burst, self._tokens + elapsed * rate)
        waiters = len(self._waiters)
        return tokens, rate, waiters

    # -- feedback ----------------------------------------------------------------------------

    def on_throttle(self) -> None:
        """A call was throttled (429): slow down and forget saved tokens."""
        self.throttles += 1
        self._refill()
        self._tokens = min(self._tokens, 0.0)
        now = self._clock.monotonic()
        if now - self._last_decrease >= self._cooldown_s:
            self._last_decrease = now
            self._rate = max(self._min_rate, self._rate * self._decrease)

    # -- acquiring ---------------------------------------------------------------------------

    def _take(self) -> bool:
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.granted += 1
            return True
        return False

    async def acquire(self, priority: Priority | float = 0.0) -> None:
        """Wait for one token. Lower `priority` values are served first."""
        if self._waiters.head() is None and self._take():
            return
        with self._waiters.queued(priority) as me, tracing.waiting("rate_budget"):
            while True:
                if self._waiters.head() is not me:
                    await me.wait()
                elif self._take():
                    return
                else:  # the head sleeps until its token is due (or someone re-plans it)
                    await me.sleep(self._clock, (1.0 - self._tokens) / self._rate)


class Bucket(Protocol):
    """What the gateway needs of one operation's budget."""

    @property
    def target_rate(self) -> float:
        """Calls per second this worker may make while nothing is throttled."""
        ...

    async def acquire(self, priority: Priority | float = 0.0) -> None:
        """Wait for one call's worth of budget; lower `priority` values first, and a `Priority`
        lowered while it waits moves forward."""
        ...

    def on_throttle(self) -> None: ...


class Budget(Protocol):
    """A bucket per Connect operation: `RateBudget` here, the fleet's shared one in Redis."""

    def __getitem__(self, operation: str) -> Bucket: ...

    def snapshots(self) -> list[tuple[str, tuple[float, float, int]]]: ...


class RateBudget:
    """The process's buckets, one per Connect operation, each at `share` of the account quota.

    `headroom` keeps the worker a little under the quota, and the burst one token under its
    share, so that latency jitter between this process and Connect (a cold connection delays a
    call, the next one arrives on time) does not turn into 429s.
    """

    def __init__(
        self,
        quotas: Mapping[Operation, Quota] | Mapping[str, Quota] = DEFAULT_QUOTAS,
        *,
        share: float = BudgetShare.share,
        headroom: float = BudgetShare.headroom,
        clock: Clock | None = None,
        recovery_s: float = 30.0,
    ) -> None:
        BudgetShare(share, headroom)  # checks both
        factor = share * (1.0 - headroom)
        self.buckets: dict[str, AdaptiveTokenBucket] = {
            Operation(op): AdaptiveTokenBucket(
                op,
                q.rate * factor,
                max(1.0, q.burst * share - 1.0),
                clock=clock,
                recovery_s=recovery_s,
            )
            for op, q in quotas.items()
        }

    def __getitem__(self, operation: str) -> AdaptiveTokenBucket:
        return self.buckets[operation]

    def snapshots(self) -> list[tuple[str, tuple[float, float, int]]]:
        """Every bucket's (tokens, rate, waiters), safe from another thread (for metrics)."""
        return [(str(op), bucket.snapshot()) for op, bucket in self.buckets.items()]
