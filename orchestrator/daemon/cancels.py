"""Where a cancel message goes: the worker's lifecycles by RequestId, its tombstones, and the
requests it finished recently.

A cancel for a request whose lifecycle runs here acts at once (its `Cancellation`). Otherwise the
cancel is recorded as a tombstone, kept `tombstone_ttl_s` (at least the requests' shelf life,
`request_ttl_s`, and never under `TOMBSTONE_FLOOR_S`), which every start attempt asks for: a
request whose cancel came first never reaches Connect. A cancel naming its `ContactId` stops that
contact from here, unless an agent has it (the worker that holds the lifecycle, if any, then sees
its contact stopped and reports `request.cancelled`). The cancel message is acknowledged once its
tombstone is recorded; while it cannot be (Redis unreachable), the worker keeps trying, the message
hidden, and a worker that stops meanwhile hands it back: no cancel is lost.

Each cancel is counted once, by the worker that received it and by what it achieved as that
worker knows it (`orchestrator_cancels_total{result}`): `cancelled`; `too_late` (an agent has the
contact, or the request had its final event here in the last `tombstone_ttl_s`); `unknown` (not
held nor finished here: its tombstone waits for the request, or another replica acts on it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from orchestrator.clock import Clock, SystemClock
from orchestrator.engine.cancellation import (
    Cancellation,
    CancelResult,
    MemoryTombstones,
    Tombstone,
    Tombstones,
    TombstoneUnrecorded,
)
from orchestrator.engine.doorbells import Expiring, Holding
from orchestrator.engine.lifecycle import LifecycleEngine
from orchestrator.engine.request import CancelRejected, CancelRequest, RequestRejected
from orchestrator.engine.stopping import StopReason, StopResult, let_go
from orchestrator.errors import RetryLater
from orchestrator.retry import backoff_s

log = structlog.get_logger("orchestrator.daemon.cancels")

#: Tombstones are kept at least this long, even when requests never expire (`request_ttl_s` 0).
TOMBSTONE_FLOOR_S = 300.0
#: At most this many tombstones and finished requests are remembered in memory.
_LIMIT = 100_000


def tombstone_ttl_s(request_ttl_s: float) -> float:
    """How long a cancel is remembered: as long as its request may still come, at least
    `TOMBSTONE_FLOOR_S`."""
    return max(request_ttl_s, TOMBSTONE_FLOOR_S)


class Cancels:
    """The worker's side of cancels. `notify` (fleet mode) tells the other replicas of a
    tombstone so the one holding the lifecycle acts at once."""

    def __init__(
        self,
        engine: LifecycleEngine,
        request_ttl_s: float,
        *,
        tombstones: Tombstones | None = None,
        notify: Callable[[Tombstone], Awaitable[None]] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock or SystemClock()
        ttl_s = tombstone_ttl_s(request_ttl_s)
        self.tombstones = tombstones or MemoryTombstones(ttl_s=ttl_s, clock=self._clock)
        self._notify = notify
        self._held: dict[str, list[Cancellation]] = {}
        self._finished: Expiring[bool] = Expiring(ttl_s, _LIMIT)

    def track(self, request_id: str, receive_count: int) -> Holding[Cancellation]:
        """The cancellation of one lifecycle running here, known by its RequestId while it runs
        (a cancel withdraws its request before the start on the first delivery only: a
        redelivery's contact may exist, and is stopped once found)."""
        cancellation = Cancellation(
            request_id,
            withdrawable=receive_count == 1,
            tombstones=self.tombstones,
            count=self._count,
        )
        return Holding(self._held, request_id, cancellation)

    def finished(self, request_id: str) -> None:
        """The request had its final event here: a cancel for it now is too late."""
        now = self._clock.monotonic()
        self._finished.expire(now)
        self._finished.add(request_id, now, True)

    def held(self) -> list[str]:
        """The requests whose lifecycle runs here."""
        return list(self._held)

    def noticed(self, tombstone: Tombstone) -> None:
        """Another replica recorded a cancel (fleet mode): act on it if the lifecycle is here
        (the replica that received the cancel counts it)."""
        for cancellation in self._held.get(tombstone.request_id, ()):
            cancellation.request(tombstone)

    async def receive(self, cancel: CancelRequest) -> RetryLater | None:
        """Act on a cancel message; the answer is None once it may be acknowledged. While its
        tombstone cannot be recorded (Redis unreachable) it is tried again in place, the message
        kept hidden and no receive spent (a worker stopping meanwhile hands it back); the contact
        it names not stopped (`RetryLater`): the message goes back to the queue."""
        failures = 0
        while True:
            try:
                await self._receive(cancel)
            except TombstoneUnrecorded as error:
                failures += 1
                if failures == 1:
                    log.warning("cancel.unrecorded", request_id=cancel.request_id, error=str(error))
                await self._clock.sleep(backoff_s(failures, first_s=0.5, max_s=5.0))
                continue
            except RetryLater as failure:
                log.warning("cancel.contact_not_stopped", request_id=cancel.request_id)
                return failure
            if failures:
                log.info("cancel.recorded_late", request_id=cancel.request_id, tries=failures + 1)
            return None

    async def _receive(self, cancel: CancelRequest) -> None:
        rid = cancel.request_id
        tombstone = Tombstone(rid, self._clock.time(), cancel.contact_id, cancel.instance_id)
        held = self._held.get(rid, [])
        if not held and self._finished.get(rid, self._clock.monotonic()):
            log.info("cancel.too_late", request_id=rid, detail="the request had its final event")
            self._count(CancelResult.TOO_LATE)
            return
        # Recorded first: a lifecycle handed back meanwhile, or a redelivery, finds it again.
        await self.tombstones.record(tombstone)
        if held:
            log.info("cancel.received", request_id=rid, held_here=True)
            for n, cancellation in enumerate(held):
                cancellation.request(tombstone, counted=n == 0)
            return
        if self._notify is not None:
            await self._notify(tombstone)
        if cancel.contact_id is None or cancel.instance_id is None:
            log.info("cancel.recorded", request_id=rid, detail="not held nor finished here")
            self._count(CancelResult.UNKNOWN)
            return
        await self._stop_named(rid, cancel.instance_id, cancel.contact_id)

    async def _stop_named(self, request_id: str, instance_id: str, contact_id: str) -> None:
        """Stop the contact a cancel names (its lifecycle is not here), unless an agent has it."""
        let = await let_go(
            self._engine.gateway,
            instance_id,
            contact_id,
            StopReason.CANCELLED,
            metrics=self._engine.metrics,
            priority=self._engine.watch.confirm_priority,
        )
        if let.result is StopResult.ERROR and let.error is not None:
            raise RetryLater(let.error)
        result = CancelResult.CANCELLED if let.contact_stopped else CancelResult.TOO_LATE
        log.info("cancel.contact_named", request_id=request_id, result=result.value)
        self._count(result)

    def rejected(self, rejected: RequestRejected, *, first: bool) -> None:
        """A message that is not a call request: a malformed cancel is counted (once)."""
        if first and isinstance(rejected, CancelRejected):
            self._count(CancelResult.MALFORMED)

    def _count(self, result: CancelResult) -> None:
        self._engine.metrics.cancels.labels(result.value).inc()
