"""The fleet's rate budget: every worker spends one shared budget per Connect operation in Redis.

`FleetBudget` has the shape the gateway expects of a budget (`budget[operation]` is a bucket with
`acquire(priority)` and `on_throttle()`), so the gateway does not know it is in a fleet.

* Within a worker, callers take turns by priority (lowest first, then arrival): only the head
  asks Redis, and when the script answers "wait", the head waits and asks again. Nobody is
  refused.
* The budget is the configured quota less `headroom`, with a burst one under the quota's: no
  `quota_share`, since the whole fleet draws from one budget.
* A 429 is noted at once and reported to Redis by the next acquire (the gateway retries through
  it), where the shared ceiling is lowered once per cooldown for the whole fleet.
* While Redis is unreachable (the breaker is open, or a call just failed) each worker spends a
  local budget at `1 / workers` of the quota without burst, `workers` being the fleet size last
  seen in the heartbeats. When Redis answers again the shared budget takes over by itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

from redis.asyncio import Redis

from orchestrator.clock import Clock, SystemClock
from orchestrator.connect.operations import BudgetShare, Operation, Quota
from orchestrator.connect.ratelimit import AdaptiveTokenBucket
from orchestrator.daemon.fleet.breaker import REDIS_ERRORS, Breaker
from orchestrator.daemon.fleet.gcra import Decision, Gcra, GcraLimit
from orchestrator.waiters import Priority, Waiters


class _Turns:
    """One holder at a time, the others queued by (priority, arrival)."""

    def __init__(self) -> None:
        self._waiters = Waiters()
        self._busy = False

    @property
    def waiting(self) -> int:
        return len(self._waiters) + (1 if self._busy else 0)

    @contextlib.asynccontextmanager
    async def turn(self, priority: Priority | float) -> AsyncIterator[None]:
        with self._waiters.queued(priority) as me:
            while self._busy or self._waiters.head() is not me:
                await me.wait()
        self._busy = True
        try:
            yield
        finally:
            self._busy = False
            self._waiters.wake_head()


class FleetBucket:
    """One operation's share of the fleet budget, as seen from one worker."""

    def __init__(
        self,
        operation: str,
        *,
        key: str,
        limit: GcraLimit,
        gcra: Gcra,
        breaker: Breaker,
        fallback: AdaptiveTokenBucket,
        clock: Clock,
    ) -> None:
        self.name = operation
        self.key = key
        self.limit = limit
        self.fallback = fallback
        self._gcra = gcra
        self._breaker = breaker
        self._clock = clock
        self._turns = _Turns()
        self._throttle_pending = False
        self._last: Decision | None = None
        self.granted = 0
        self.throttles = 0
        #: The fleet's size as last seen (set by `FleetBudget.set_workers`).
        self.workers = 1

    @property
    def target_rate(self) -> float:
        """This worker's fair part of the fleet's rate (what admission and polling plan with)."""
        return self.limit.rate / self.workers

    def on_throttle(self) -> None:
        """A call was throttled (429): the local fallback slows down now; the shared ceiling is
        lowered by the next acquire (one Redis call, from inside the turn)."""
        self.throttles += 1
        self._throttle_pending = True
        self.fallback.on_throttle()

    async def acquire(self, priority: Priority | float = 0.0) -> None:
        """Wait for one call's worth of the fleet budget. Lower `priority` values go first."""
        async with self._turns.turn(priority):
            while True:
                if not self._breaker.allow():
                    break
                try:
                    if self._throttle_pending:
                        self._throttle_pending = False
                        await self._gcra.throttled(self.key, self.limit)
                    decision = await self._gcra.acquire(self.key, self.limit)
                except REDIS_ERRORS as error:
                    self._breaker.failed(error)
                    break
                self._breaker.succeeded()
                self._last = decision
                if decision.granted:
                    self.granted += 1
                    return
                await self._clock.sleep(decision.wait_s)
            # Redis is unreachable: this worker's conservative share, nothing refused.
            await self.fallback.acquire(priority)
            self.granted += 1

    def snapshot(self) -> tuple[float, float, int]:
        """(tokens, rate, waiters): the shared budget as last seen, or the fallback's while
        Redis is unreachable. Safe from another thread."""
        last = self._last
        if self._breaker.open or last is None:
            tokens, rate, _ = self.fallback.snapshot()
        else:
            tokens, rate = last.tokens, self.limit.rate * last.factor
        return tokens, rate, self._turns.waiting


class FleetBudget:
    """The fleet's buckets, one per Connect operation, at the account's quota less `headroom`."""

    def __init__(
        self,
        redis: Redis,
        quotas: Mapping[Operation, Quota] | Mapping[str, Quota],
        *,
        prefix: str,
        breaker: Breaker,
        headroom: float = BudgetShare.headroom,
        workers: int = 1,
        recovery_s: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        BudgetShare(headroom=headroom)  # checks it
        self._quotas = dict(quotas)
        self._headroom = headroom
        self._recovery_s = recovery_s
        self._clock = clock or SystemClock()
        self.workers = max(1, workers)
        fallback = self._fallback(self.workers)
        gcra = Gcra(redis)
        self.buckets: dict[str, FleetBucket] = {
            Operation(op): FleetBucket(
                Operation(op),
                key=f"{prefix}:quota:{op}",
                limit=GcraLimit(
                    q.rate * (1.0 - headroom),
                    max(1.0, q.burst - 1.0),
                    recovery_s=recovery_s,
                ),
                gcra=gcra,
                breaker=breaker,
                fallback=fallback[Operation(op)],
                clock=self._clock,
            )
            for op, q in self._quotas.items()
        }
        for bucket in self.buckets.values():
            bucket.workers = self.workers

    def _fallback(self, workers: int) -> dict[str, AdaptiveTokenBucket]:
        """Local buckets at quota / workers and no burst: when Redis goes away, Connect still
        counts what the fleet spent a moment ago, so nobody starts with saved calls."""
        return {
            Operation(op): AdaptiveTokenBucket(
                op,
                q.rate * (1.0 - self._headroom) / workers,
                1.0,
                clock=self._clock,
                recovery_s=self._recovery_s,
            )
            for op, q in self._quotas.items()
        }

    def set_workers(self, workers: int) -> None:
        """The fleet's size as last seen: sizes the local fallback (quota / workers)."""
        workers = max(1, workers)
        if workers == self.workers:
            return
        self.workers = workers
        fallback = self._fallback(workers)
        for op, bucket in self.buckets.items():
            bucket.fallback = fallback[op]
            bucket.workers = workers

    def __getitem__(self, operation: str) -> FleetBucket:
        return self.buckets[operation]

    def snapshots(self) -> list[tuple[str, tuple[float, float, int]]]:
        """Every bucket's (tokens, rate, waiters), safe from another thread (for metrics)."""
        return [(str(op), bucket.snapshot()) for op, bucket in self.buckets.items()]
