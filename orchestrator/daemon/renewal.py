"""No valid request lost to dying workers: a request on its next-to-last receive is moved to a
fresh message, so the queue's receive counter restarts, under the worker's own bounded count.

SQS's redrive policy moves a message to the dead-letter queue after maxReceiveCount receives,
whatever ended them: a worker SIGKILLed (or OOM-killed) while holding a valid request spends a
receive as surely as poison does, so a request whose holders die five times in a row would be
dead-lettered. Instead, a worker that receives a valid request on receive maxReceiveCount - 1
(receive 2 when maxReceiveCount is 2: a first receive is never renewed) sends a copy of it (same
body; a FIFO queue keeps its group) carrying the receives so far
(`orchestrator-attempts`) and the original SentTimestamp (`orchestrator-first-sent-at`), then
deletes the original; the copy is received as a fresh message (receive 1). The worker's own cap
(`CAP_FACTOR` x maxReceiveCount receives in all) stops renewing a request that keeps killing
workers: its last receives then run out and the queue dead-letters it (`message.renewals_exhausted`
names why). Poison never gets here: it is rejected and dead-lettered as before.

Nothing is started twice: the copy carries the same RequestId, so its ClientToken finds the same
contact. A copy is a redelivery (its contact may exist), so it never expires unstarted, and it
keeps its place in the start order by the original SentTimestamp. A worker killed between the
send and the delete leaves both: the second one finds the same contact (one contact, possibly a
second final event).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import structlog

from orchestrator.metrics import Metrics
from orchestrator.sqs import QueueMessage

log = structlog.get_logger("orchestrator.daemon.worker")

#: Message attributes of a renewed copy: the receives before it, the original SentTimestamp.
ATTEMPTS = "orchestrator-attempts"
FIRST_SENT_AT = "orchestrator-first-sent-at"
#: Receives a request may have in all, in units of the queue's maxReceiveCount.
CAP_FACTOR = 3


@runtime_checkable
class Renewable(Protocol):
    """A queue source that can send a copy of a message it received (`SqsQueueSource`)."""

    async def send_copy(self, message: QueueMessage, attributes: Mapping[str, str]) -> None: ...


def _attribute(message: QueueMessage, name: str) -> str | None:
    value = message.attributes.get(name)
    return str(value.get("StringValue")) if isinstance(value, Mapping) else None


def earlier_receives(message: QueueMessage) -> int:
    """Receives of the messages this one was renewed from (0: an original)."""
    try:
        return max(0, int(_attribute(message, ATTEMPTS) or 0))
    except ValueError:
        return 0


def first_sent_at(message: QueueMessage) -> float | None:
    """When the original was sent (epoch seconds): the renewal's attribute, else SentTimestamp."""
    try:
        return float(_attribute(message, FIRST_SENT_AT) or "") or message.sent_at
    except ValueError:
        return message.sent_at


def renewal_due(message: QueueMessage, *, max_receives: int, has_redrive: bool) -> bool:
    """Whether this delivery should move the request to a fresh message: it was received before
    (a first receive is never renewed), the queue dead-letters it after at most one more
    receive, and the worker's cap leaves room for more."""
    if not has_redrive or message.receive_count < max(2, max_receives - 1):
        return False
    return earlier_receives(message) + message.receive_count < CAP_FACTOR * max_receives


def copy_attributes(message: QueueMessage) -> dict[str, str]:
    """The attributes of the renewed copy of `message`."""
    sent = first_sent_at(message)
    out = {ATTEMPTS: str(earlier_receives(message) + message.receive_count)}
    if sent is not None:
        out[FIRST_SENT_AT] = repr(sent)
    return out


@dataclass(eq=False)
class Renewals:
    """Renews what is due (`renew`), counting and logging it."""

    metrics: Metrics

    async def renew(
        self, source: object, message: QueueMessage, *, max_receives: int, has_redrive: bool
    ) -> bool:
        """Send the renewed copy of `message` if it is due; whether it was sent (the caller then
        deletes the original). A failed send leaves the original as it was."""
        if not renewal_due(message, max_receives=max_receives, has_redrive=has_redrive):
            if has_redrive and message.receive_count == max(2, max_receives - 1):
                log.warning(
                    "message.renewals_exhausted",
                    receives=earlier_receives(message) + message.receive_count,
                    cap=CAP_FACTOR * max_receives,
                    detail="this request kept losing its workers; it is no longer renewed and "
                    "goes to the dead-letter queue if this receive and the next do not finish it",
                )
            return False
        if not isinstance(source, Renewable):
            return False
        attributes = copy_attributes(message)
        try:
            await source.send_copy(message, attributes)
        except Exception as exc:
            log.warning("message.renewal_failed", error=repr(exc))
            return False
        self.metrics.messages_renewed.inc()
        log.info(
            "message.renewed",
            receive_count=message.receive_count,
            receives_in_all=attributes[ATTEMPTS],
            detail="moved to a fresh message before its last receive; the original is deleted",
        )
        return True
