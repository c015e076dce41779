"""The contact-events consumer: Connect's contact events, from an SQS queue, to the watches.

An EventBridge rule sends Connect's contact events to an SQS queue; this loop long-polls it (10
messages, 20 s), parses each body (`parse_contact_event`), hands the event to the sink (the local
watches, or the fleet) and deletes what it read in one `DeleteMessageBatch` per receive. Events
are worth something for seconds only, so nothing is ever retried later: junk, foreign contacts
and events the sink could not take are counted, logged and deleted like the rest.

The loop runs beside the worker's receive loop (a worker service), on its own SQS client, and
never ends on an error: a failing receive is logged, reported to the readiness board
(`contact_events` not ready, with the reason) and retried with backoff, while requests keep
completing by polling. It stops when the worker cancels its services.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

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
        metrics: Metrics | None = None,
        readiness: ReadinessBoard | None = None,
        wait_time_s: int = 20,
        max_messages: int = 10,
        retry_base_s: float = 1.0,
        retry_max_s: float = 30.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self.queue_url = queue_url
        self._sink = sink
        self._metrics = metrics or Metrics()
        self._readiness = readiness or ReadinessBoard()
        self._wait_time_s = wait_time_s
        self._max_messages = max_messages
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        #: Consecutive failed receives (0 while the queue answers).
        self.receive_failures = 0
        #: Messages read (events and junk), for tests and logs.
        self.received = 0

    async def run(self) -> None:
        log.info("contact_events.consumer_started", queue_url=self.queue_url)
        try:
            while True:
                messages = await self._receive()
                if messages is None:
                    await self._clock.sleep(self._retry_delay())
                    continue
                if messages:
                    await self._handle(messages)
        finally:
            log.info("contact_events.consumer_stopped", received=self.received)

    # -- one round ---------------------------------------------------------------------------

    async def _receive(self) -> list[dict[str, Any]] | None:
        """The next messages (maybe none), or None when the receive failed."""
        try:
            answer = await self._client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self._max_messages,
                WaitTimeSeconds=self._wait_time_s,
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
        messages: list[dict[str, Any]] = [dict(m) for m in answer.get("Messages", [])]
        self.received += len(messages)
        return messages

    def _retry_delay(self) -> float:
        exponent = min(self.receive_failures - 1, 16)
        delay = min(self._retry_max_s, self._retry_base_s * 2**exponent)
        jittered: float = delay * self._rng.uniform(0.5, 1.0)
        return jittered

    async def _handle(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            event = self._parse(message)
            if event is not None:
                await self._deliver(event)
        await self._delete(messages)

    def _parse(self, message: dict[str, Any]) -> ContactEvent | None:
        try:
            return parse_contact_event(message.get("Body", ""))
        except NotAContactEvent as error:
            self._metrics.contact_event_outcomes.labels("malformed").inc()
            log.warning(
                "contact_events.malformed",
                message_id=message.get("MessageId"),
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

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        """One DeleteMessageBatch; what it fails to delete comes back and is read as a duplicate.
        Shielded (for at most 10 s), so a shutdown does not hand back what was delivered."""
        entries: Any = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
        ]
        with anyio.move_on_after(10.0, shield=True):
            answer = None
            try:
                answer = await self._client.delete_message_batch(
                    QueueUrl=self.queue_url, Entries=entries
                )
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
        failed = answer.get("Failed", [])
        if failed:
            log.warning(
                "contact_events.delete_failed",
                messages=len(failed),
                error=str(failed[0].get("Code")),
                detail=str(failed[0].get("Message", ""))[:300],
            )
