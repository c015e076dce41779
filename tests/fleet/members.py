"""Fleet members in one process, each with its own Redis client, metrics and readiness board,
built as a worker builds them (`Fleet.build`), and callers that spend their START budget."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator, Sequence

import anyio

from orchestrator.clock import Clock
from orchestrator.connect.operations import Operation, Quota
from orchestrator.daemon.fleet import Fleet, FleetPolicy, redis_client
from orchestrator.daemon.readiness import ReadinessBoard
from orchestrator.metrics import Metrics

START = Operation.START_WEBRTC_CONTACT
QUOTAS = {
    START: Quota(20.0, 5.0),
    Operation.DESCRIBE_CONTACT: Quota(10.0, 15.0),
    Operation.START_SCREEN_SHARING: Quota(2.0, 5.0),
}
HEADROOM = 0.03
#: The fleet's START budget: the quota less the headroom, a burst one under the quota's.
RATE = 20.0 * (1 - HEADROOM)
BURST = 5.0 - 1.0


class Member:
    """One worker's fleet parts, with its own client, metrics and readiness board."""

    def __init__(self, fleet: Fleet, metrics: Metrics, readiness: ReadinessBoard) -> None:
        self.fleet, self.metrics, self.readiness = fleet, metrics, readiness

    @property
    def degraded(self) -> float | None:
        return self.metrics.registry.get_sample_value("orchestrator_fleet_degraded")


@contextlib.asynccontextmanager
async def members(
    url: str,
    count: int,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    **policy: float,
) -> AsyncIterator[list[Member]]:
    """`count` members on Redis at `url`; `policy` changes `FleetPolicy` (the breaker probes
    every 0.3 s unless said)."""
    chosen = FleetPolicy(**{"breaker_reset_s": 0.3, **policy})  # type: ignore[arg-type]
    async with contextlib.AsyncExitStack() as stack:
        out = []
        for index in range(count):
            client = await stack.enter_async_context(redis_client(url))
            metrics, readiness = Metrics(), ReadinessBoard()
            fleet = Fleet.build(
                client,
                chosen,
                key_prefix="orchestrator",
                region="us-east-1",
                quotas=QUOTAS,
                headroom=HEADROOM,
                metrics=metrics,
                readiness=readiness,
                worker_id=f"worker-{index}",
                clock=clock,
                rng=rng,
            )
            out.append(Member(fleet, metrics, readiness))
        yield out


async def spend_each(
    owners: Sequence[Member], seconds: float, per_worker: int = 4
) -> list[list[float]]:
    """Every member's callers take START budget as fast as it is given, for `seconds`: each
    member's grants (monotonic stamps), in the order of `owners`."""
    stamps: list[list[float]] = [[] for _ in owners]
    deadline = time.monotonic() + seconds

    async def caller(index: int) -> None:
        bucket = owners[index].fleet.budget[START]
        while True:
            await bucket.acquire()
            now = time.monotonic()
            if now >= deadline:
                return
            stamps[index].append(now)

    async with anyio.create_task_group() as tg:
        for index in range(len(owners)):
            for _ in range(per_worker):
                tg.start_soon(caller, index)
    return [sorted(s) for s in stamps]


async def spend(owners: Sequence[Member], seconds: float, per_worker: int = 4) -> list[float]:
    """As `spend_each`, every member's grants together."""
    return sorted(t for each in await spend_each(owners, seconds, per_worker) for t in each)


def busiest_second(stamps: Sequence[float]) -> int:
    """The most stamps within any one second."""
    stamps = sorted(stamps)
    best, low = 0, 0
    for high, stamp in enumerate(stamps):
        while stamp - stamps[low] >= 1.0:
            low += 1
        best = max(best, high - low + 1)
    return best
