"""The queue-source boundary: where call requests come from.

`QueueSource` is what the worker needs from a queue. `SqsQueueSource` (in `sqs.py`) is the real
one; `orchestrator.testing.memory_queue.MemoryQueue` has the same visibility semantics in memory,
for benchmarks that must not measure a local SQS server and for the contract tests both pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

#: SQS hides a message for at most 12 hours (visibility timeouts and hand-back delays).
MAX_VISIBILITY_TIMEOUT_S = 43_200
#: SQS's longest long poll (ReceiveMessage's WaitTimeSeconds).
MAX_WAIT_TIME_S = 20


@dataclass(frozen=True)
class QueueMessage:
    """One received message. `receipt` identifies this delivery (not the message)."""

    message_id: str
    body: str
    receipt: str = field(repr=False)
    receive_count: int = 1
    group_id: str | None = None
    #: When the message was sent to the queue (epoch seconds; SQS's SentTimestamp).
    sent_at: float | None = None


class QueueSource(Protocol):
    async def receive(
        self, max_messages: int, *, wait_time_s: float, visibility_timeout_s: int
    ) -> list[QueueMessage]:
        """Up to `max_messages` messages, waiting up to `wait_time_s` for the first."""
        ...

    async def delete(self, message: QueueMessage) -> None:
        """Acknowledge: the message is done for good."""
        ...

    async def change_visibility(self, message: QueueMessage, timeout_s: int) -> None:
        """Hide the message for `timeout_s` more seconds from now (0: hand it back at once)."""
        ...

    async def max_receive_count(self) -> int | None:
        """Deliveries before the queue moves a message to its dead-letter queue, if it has one."""
        ...
