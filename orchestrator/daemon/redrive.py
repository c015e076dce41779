"""The request queue's redrive policy as the worker needs it: how many receives a message gets
before the queue dead-letters it, and whether there is a dead-letter queue at all.

The policy is read before the first receive (the worker is not ready until it is known: guessing
"no dead-letter queue" would delete poison the operator wants to keep) and read again every
`refresh_s`, so a policy added or changed later is followed without a restart. An unreadable
policy is logged and retried with the receive loop's backoff; once known, the last reading
stays in force while a re-read fails. A queue that does not exist says so (`queue.not_found`,
naming the URL, counted in `orchestrator_queue_not_found_total{queue="requests"}`), and `/readyz`
names it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import structlog

from orchestrator.clock import Clock
from orchestrator.daemon.readiness import ReadinessBoard
from orchestrator.metrics import Metrics
from orchestrator.sqs import QueueMessage, is_missing_queue

log = structlog.get_logger("orchestrator.daemon.worker")

#: The readiness board's part the policy reports under.
QUEUE_PART = "queue"


@dataclass(kw_only=True, eq=False)
class RedriveTracker:
    """`run()` keeps `max_receives` and `has_redrive` current; `known` is set once read."""

    #: Reads the queue's maxReceiveCount, or None without a redrive policy.
    read: Callable[[], Awaitable[int | None]]
    #: Used while the queue has no redrive policy.
    fallback_max_receives: int
    readiness: ReadinessBoard
    clock: Clock
    backoff_s: Callable[[int], float]
    refresh_s: float
    #: Where a missing queue is counted, and the URL its log line names.
    metrics: Metrics | None = None
    queue_url: str | None = None
    known: anyio.Event = field(default_factory=anyio.Event, init=False)
    has_redrive: bool = field(default=False, init=False)
    max_receives: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.max_receives = self.fallback_max_receives

    def final_attempt(self, message: QueueMessage) -> bool:
        """Whether this delivery is the last the queue allows."""
        return message.receive_count >= self.max_receives

    def dead_letters_next(self, message: QueueMessage) -> bool:
        """Whether handing `message` back sends it to the dead-letter queue (its last delivery,
        and there is one)."""
        return self.has_redrive and self.final_attempt(message)

    async def run(self) -> None:
        """Read the policy until it is known, then again every `refresh_s`, until cancelled."""
        failures = 0
        while True:
            try:
                found = await self.read()
            except Exception as exc:
                failures += 1
                known = self.known.is_set()
                if is_missing_queue(exc):
                    self.missing(exc)
                    await self.clock.sleep(self.backoff_s(failures))
                    continue
                log.warning(
                    "queue.redrive_policy_unreadable",
                    error=repr(exc),
                    known=known,
                    detail="keeping the policy read before"
                    if known
                    else "the worker does not receive until it knows where poison messages go",
                )
                if not known:
                    self.readiness.fail(QUEUE_PART, f"redrive policy unreadable: {exc!r}")
                await self.clock.sleep(self.backoff_s(failures))
                continue
            failures = 0
            if not self.known.is_set() or (found is not None) != self.has_redrive:
                self._announce(found)
            self.has_redrive = found is not None
            self.max_receives = found or self.fallback_max_receives
            self.readiness.ok(QUEUE_PART)
            self.known.set()
            await self.clock.sleep(self.refresh_s)

    def missing(self, exc: Exception) -> None:
        """The request queue does not exist: say so, count it, and fail readiness."""
        if self.metrics is not None:
            self.metrics.queue_not_found.labels("requests").inc()
        log.error(
            "queue.not_found",
            queue_url=self.queue_url,
            error=repr(exc),
            detail="no queue at [queue] url (check the URL, its region and the account); the "
            "worker receives nothing until it exists",
        )
        self.readiness.fail(QUEUE_PART, f"queue not found: {self.queue_url}")

    def answered(self) -> None:
        """The queue answered a receive again: a failure it reported before is over."""
        if self.known.is_set():
            self.readiness.ok(QUEUE_PART)

    def _announce(self, found: int | None) -> None:
        if found is not None:
            log.info("queue.redrive_policy", max_receive_count=found)
            return
        log.warning(
            "queue.no_redrive_policy",
            detail="invalid messages are deleted after their last attempt instead of going "
            "to a dead-letter queue",
            max_receive_count=self.fallback_max_receives,
        )
