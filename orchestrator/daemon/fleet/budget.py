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
  local share at `1 / workers` of the budget, `workers` being the fleet size last known from
  the heartbeats (kept through the outage), without burst and at a random phase, so the fleet
  together keeps the budget's pace without bursts.
* When Redis answers again (empty, after a restart or a failover) the worker goes back to the
  shared budget but keeps its local pace as well for `FleetPolicy.handover_s`, the time every
  other worker takes to find Redis back: until then the shared budget cannot know what the
  workers still on their local shares spend. So the fleet's pace neither dips nor bursts.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from orchestrator.clock import Clock, SystemClock
from orchestrator.connect.operations import BudgetShare, Operation, Quota
from orchestrator.connect.ratelimit import AdaptiveTokenBucket
from orchestrator.daemon.fleet.breaker import REDIS_ERRORS, Breaker
from orchestrator.daemon.fleet.gcra import Decision, Gcra, GcraLimit
from orchestrator.daemon.fleet.policy import FleetPolicy, local_rate
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


@dataclass(frozen=True)
class _Parts:
    """What the buckets of one worker's budget share."""

    gcra: Gcra
    breaker: Breaker
    clock: Clock
    rng: random.Random
    #: How long a bucket back on the shared budget keeps its local pace (`FleetPolicy`).
    handover_s: float
    #: The local share's recovery after a 429, as the shared ceiling's.
    recovery_s: float


class FleetBucket:
    """One operation's share of the fleet budget, as seen from one worker."""

    def __init__(self, operation: str, limit: GcraLimit, *, key: str, parts: _Parts) -> None:
        self.name = operation
        self.key = key
        self.limit = limit
        self._parts = parts
        self._turns = _Turns()
        self._throttle_pending = False
        self._last: Decision | None = None
        self.granted = 0
        self.throttles = 0
        #: The fleet's size as last known (set by `FleetBudget.set_workers`).
        self.workers = 1
        #: Whether Redis failed this bucket's last call: it spends its local share alone.
        self.local = False
        #: Until when (monotonic) a bucket back on the shared budget keeps its local pace too.
        self._paced_until = -math.inf
        self.fallback = self._local_share()

    @property
    def target_rate(self) -> float:
        """This worker's fair part of the fleet's rate (what admission and polling plan with)."""
        return local_rate(self.limit.rate, self.workers)

    def _local_share(self) -> AdaptiveTokenBucket:
        """A local bucket at `rate / workers`, without burst or saved calls (Connect still counts
        what the fleet spent a moment ago), at a random phase: workers that lose Redis at the same
        moment then call at different moments, not all together once per interval."""
        return AdaptiveTokenBucket(
            self.name,
            self.target_rate,
            1.0,
            clock=self._parts.clock,
            recovery_s=self._parts.recovery_s,
            tokens=self._parts.rng.random(),
        )

    def set_workers(self, workers: int) -> None:
        if workers != self.workers:
            self.workers = workers
            self.fallback = self._local_share()

    def paced(self) -> bool:
        """Whether calls wait for the local share: while Redis fails, and for `handover_s` after
        it answers again, until every worker is back on the shared budget (which knows nothing
        of what the others spent meanwhile)."""
        return self.local or self._parts.clock.monotonic() < self._paced_until

    def on_throttle(self) -> None:
        """A call was throttled (429): the local share slows down now; a call of the shared
        budget also lowers the shared ceiling, by the next acquire (from inside the turn). A 429
        on the local pace is not reported to the shared budget: by the time Redis answers it is
        old news, and halving the ceiling then would slow the whole fleet for nothing."""
        self.throttles += 1
        self.fallback.on_throttle()
        if not self.paced():
            self._throttle_pending = True

    async def acquire(self, priority: Priority | float = 0.0) -> None:
        """Wait for one call's worth of the fleet budget. Lower `priority` values go first."""
        async with self._turns.turn(priority):
            paced = self.paced()
            if paced:  # the local share first, so the shared budget sees the call when it goes
                await self.fallback.acquire(priority)
            if await self._shared():
                if self.local:
                    self.local = False
                    self._paced_until = self._parts.clock.monotonic() + self._parts.handover_s
            else:
                if not self.local:  # Redis is unreachable: this worker's share, nothing refused
                    self.local = True
                    self._throttle_pending = False
                    self.fallback = self._local_share()
                if not paced:
                    await self.fallback.acquire(priority)
            self.granted += 1

    async def _shared(self) -> bool:
        """One call of the shared budget, waiting as long as the script says: False when Redis
        does not answer (or the breaker keeps the call from trying)."""
        gcra, breaker = self._parts.gcra, self._parts.breaker
        while breaker.allow():
            try:
                if self._throttle_pending:
                    self._throttle_pending = False
                    await gcra.throttled(self.key, self.limit)
                decision = await gcra.acquire(self.key, self.limit)
            except REDIS_ERRORS as error:
                breaker.failed(error)
                return False
            breaker.succeeded()
            self._last = decision
            if decision.granted:
                return True
            await self._parts.clock.sleep(decision.wait_s)
        return False

    def snapshot(self) -> tuple[float, float, int]:
        """(tokens, rate, waiters): the shared budget as last seen, or the local share's while
        calls wait for it. Safe from another thread."""
        last = self._last
        if last is None or self.paced():
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
        policy: FleetPolicy,
        breaker: Breaker,
        headroom: float = BudgetShare.headroom,
        recovery_s: float = 30.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        BudgetShare(headroom=headroom)  # checks it
        parts = _Parts(
            Gcra(redis), breaker, clock or SystemClock(), rng or random.Random(),
            handover_s=policy.handover_s, recovery_s=recovery_s,
        )  # fmt: skip
        self.buckets: dict[str, FleetBucket] = {
            Operation(op): FleetBucket(
                Operation(op),
                GcraLimit(
                    q.rate * (1.0 - headroom), max(1.0, q.burst - 1.0), recovery_s=recovery_s
                ),
                key=f"{prefix}:quota:{op}",
                parts=parts,
            )
            for op, q in quotas.items()
        }
        self.workers = 1
        self.set_workers(policy.min_workers)

    def set_workers(self, workers: int) -> None:
        """The fleet's size as last known: sizes the local share (quota / workers)."""
        self.workers = max(1, workers)
        for bucket in self.buckets.values():
            bucket.set_workers(self.workers)

    def __getitem__(self, operation: str) -> FleetBucket:
        return self.buckets[operation]

    def snapshots(self) -> list[tuple[str, tuple[float, float, int]]]:
        """Every bucket's (tokens, rate, waiters), safe from another thread (for metrics)."""
        return [(str(op), bucket.snapshot()) for op, bucket in self.buckets.items()]
