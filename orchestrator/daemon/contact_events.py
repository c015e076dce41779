"""The contact-events consumer: Connect's contact events, from an SQS queue, to the watches.

An EventBridge rule sends Connect's contact events to an SQS queue; this loop long-polls it (a
full batch, `[contact_events] wait_time_s`), parses each body (`parse_contact_event`), hands the
event to the sink (the local watches, or the fleet) and deletes what it read in one
`DeleteMessageBatch` per receive. Events are worth something for seconds only, so nothing is ever
retried later: junk, foreign contacts and events the sink could not take are counted, logged and
deleted like the rest.

The loop runs beside the worker's receive loop (a worker service), on its own SQS client, and
only while the worker works (`may_consume`: its request queue answers and no part of it is
failing, its own contact-events part aside): a worker that is not ready takes no event another
worker needs. It never ends on an error: a failing receive is logged, reported to the readiness
board (`contact_events` not ready, with the reason) and retried with the backoff of the worker's own
receive loop (`WorkerOptions.receive_backoff_s`), while requests keep completing by polling.
It stops when the worker cancels its services.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio
import structlog
from botocore.exceptions import ClientError

from orchestrator.clock import Clock, SystemClock
from orchestrator.daemon.readiness import ReadinessBoard
from orchestrator.engine.contact_events import (
    ContactEvent,
    ContactEventSink,
    NotAContactEvent,
    parse_contact_event,
)
from orchestrator.metrics import Metrics
from orchestrator.retry import backoff_s
from orchestrator.sqs import MAX_BATCH_ENTRIES, QueueMessage, delete_batch, receive

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("orchestrator.daemon.contact_events")

#: The name this loop reports under on the readiness board.
PART = "contact_events"


def _describe(error: BaseException) -> str:
    """A short, secret-free reason: the AWS error code, else the exception's type."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "ClientError")
        return f"{code}"
    return type(error).__name__


class ContactEventsConsumer:
    """Reads one contact-events queue until cancelled. `run` is the worker service."""

    def __init__(
        self,
        client: SQSClient,
        queue_url: str,
        sink: ContactEventSink,
        *,
        metrics: Metrics,
        readiness: ReadinessBoard,
        wait_time_s: int,
        backoff_s: tuple[float, float],
        clock: Clock | None = None,
        rng: random.Random | None = None,
        may_consume: Callable[[], bool] | None = None,
        recheck_s: float = 1.0,
    ) -> None:
        self._client, self.queue_url, self._sink = client, queue_url, sink
        #: Whether the worker works (checked before each receive, every `recheck_s` while not).
        self._may_consume = may_consume or (lambda: True)
        self._recheck_s = recheck_s
        self._metrics, self._readiness = metrics, readiness
        #: Long poll of each receive, and (first, longest) pause after failed receives.
        self._wait_time_s, self._backoff_s = wait_time_s, backoff_s
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        #: Consecutive failed receives (0 while the queue answers).
        self.receive_failures = 0
        #: Messages read (events and junk), for tests and logs.
        self.received = 0

    async def run(self) -> None:
        log.info("contact_events.consumer_started", queue_url=self.queue_url)
        try:
            held_back = False
            while True:
                if not self._may_consume():
                    if not held_back:
                        log.info(
                            "contact_events.held_back",
                            detail="the worker is not ready: contact events stay in the queue "
                            "for the workers that are",
                        )
                    held_back = True
                    await self._clock.sleep(self._recheck_s)
                    continue
                if held_back:
                    log.info("contact_events.resumed")
                held_back = False
                messages = await self._receive()
                if messages is None:
                    await self._clock.sleep(self._retry_delay())
                    continue
                if messages:
                    await self._handle(messages)
        finally:
            log.info("contact_events.consumer_stopped", received=self.received)

    # -- one round ---------------------------------------------------------------------------

    async def _receive(self) -> list[QueueMessage] | None:
        """The next messages (maybe none), or None when the receive failed."""
        try:
            messages = await receive(
                self._client,
                self.queue_url,
                max_messages=MAX_BATCH_ENTRIES,
                wait_time_s=self._wait_time_s,
                system_attributes=(),
            )
        except Exception as error:
            self.receive_failures += 1
            reason = f"receive from the contact-events queue failed: {_describe(error)}"
            self._readiness.fail(PART, reason)
            log.warning(
                "contact_events.receive_failed",
                error=_describe(error),
                detail=str(error)[:300],
                failures=self.receive_failures,
            )
            return None
        if self.receive_failures:
            log.info("contact_events.receive_recovered", after_failures=self.receive_failures)
        self.receive_failures = 0
        self._readiness.ok(PART)
        self.received += len(messages)
        return messages

    def _retry_delay(self) -> float:
        return backoff_s(
            self.receive_failures,
            first_s=self._backoff_s[0],
            max_s=self._backoff_s[1],
            jitter=(0.5, 1.0),
            rng=self._rng,
        )

    async def _handle(self, messages: list[QueueMessage]) -> None:
        for message in messages:
            event = self._parse(message)
            if event is not None:
                await self._deliver(event)
        await self._delete(messages)

    def _parse(self, message: QueueMessage) -> ContactEvent | None:
        try:
            return parse_contact_event(message.body)
        except NotAContactEvent as error:
            self._metrics.contact_event_outcomes.labels("malformed").inc()
            log.warning(
                "contact_events.malformed",
                message_id=message.message_id,
                reason=str(error)[:200],
            )
            return None

    async def _deliver(self, event: ContactEvent) -> None:
        try:
            await self._sink.deliver(event)
        except Exception as error:
            log.warning(
                "contact_events.delivery_failed",
                event_id=event.event_id,
                contact_id=event.contact_id,
                event_type=event.event_type,
                error=_describe(error),
                detail=str(error)[:300],
            )

    async def _delete(self, messages: list[QueueMessage]) -> None:
        """One DeleteMessageBatch; what it fails to delete comes back and is read as a duplicate.
        Shielded (for at most 10 s), so a shutdown does not hand back what was delivered."""
        with anyio.move_on_after(10.0, shield=True):
            answer = None
            try:
                answer = await delete_batch(self._client, self.queue_url, messages)
            except Exception as error:
                log.warning(
                    "contact_events.delete_failed",
                    messages=len(messages),
                    error=_describe(error),
                    detail=str(error)[:300],
                )
                return
        if answer is None:
            log.warning("contact_events.delete_failed", messages=len(messages), error="Timeout")
            return
        failed = [error for error in answer if error is not None]
        if failed:
            code, _, detail = str(failed[0]).partition(": ")
            log.warning(
                "contact_events.delete_failed",
                messages=len(failed),
                error=code,
                detail=detail[:300],
            )
