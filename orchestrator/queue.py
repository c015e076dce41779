"""The queue-source boundary: where call requests come from.

`QueueSource` is what the worker needs from a queue. `SqsQueueSource` (in `sqs.py`) is the real
one; `MemoryQueue` here has the same visibility semantics in memory, for benchmarks that must not
measure a local SQS server and for the contract tests both implementations pass.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio


@dataclass(frozen=True)
class QueueMessage:
    """One received message. `receipt` identifies this delivery (not the message)."""

    message_id: str
    body: str
    receipt: str = field(repr=False)
    receive_count: int = 1
    group_id: str | None = None


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


@dataclass
class _Stored:
    message_id: str
    body: str
    group_id: str | None
    receive_count: int = 0
    visible_at: float = 0.0
    receipt: str | None = None


class MemoryQueue:
    """An in-memory queue with SQS's visibility semantics and an optional dead-letter list."""

    def __init__(
        self,
        *,
        max_receive_count: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._messages: dict[str, _Stored] = {}
        self._by_receipt: dict[str, str] = {}
        self._max_receive = max_receive_count
        self._clock = clock
        self._seq = itertools.count()
        self._arrived = anyio.Event()
        self.dead_letters: list[str] = []

    def send(self, body: str, *, group_id: str | None = None) -> str:
        message_id = str(uuid.uuid4())
        self._messages[message_id] = _Stored(message_id, body, group_id)
        self._arrived.set()
        return message_id

    def __len__(self) -> int:
        return len(self._messages)

    def _visible(self, now: float) -> list[_Stored]:
        return [m for m in self._messages.values() if m.visible_at <= now]

    async def receive(
        self, max_messages: int, *, wait_time_s: float, visibility_timeout_s: int
    ) -> list[QueueMessage]:
        with anyio.move_on_after(wait_time_s):
            while True:
                now = self._clock()
                batch: list[QueueMessage] = []
                for stored in self._visible(now):
                    if len(batch) >= max_messages:
                        break
                    if self._max_receive is not None and stored.receive_count >= self._max_receive:
                        del self._messages[stored.message_id]
                        self.dead_letters.append(stored.body)
                        continue
                    stored.receive_count += 1
                    stored.visible_at = now + visibility_timeout_s
                    if stored.receipt is not None:
                        self._by_receipt.pop(stored.receipt, None)
                    stored.receipt = f"{stored.message_id}#{next(self._seq)}"
                    self._by_receipt[stored.receipt] = stored.message_id
                    batch.append(
                        QueueMessage(
                            stored.message_id,
                            stored.body,
                            stored.receipt,
                            stored.receive_count,
                            stored.group_id,
                        )
                    )
                if batch:
                    return batch
                self._arrived = anyio.Event()
                pending = [m.visible_at for m in self._messages.values()]
                wake_in = min(pending) - now if pending else wait_time_s
                with anyio.move_on_after(max(0.001, wake_in)):
                    await self._arrived.wait()
        return []

    def _stored(self, message: QueueMessage) -> _Stored | None:
        message_id = self._by_receipt.get(message.receipt)
        return self._messages.get(message_id) if message_id else None

    async def delete(self, message: QueueMessage) -> None:
        stored = self._stored(message)
        if stored is not None:
            del self._messages[stored.message_id]
            self._by_receipt.pop(message.receipt, None)

    async def change_visibility(self, message: QueueMessage, timeout_s: int) -> None:
        stored = self._stored(message)
        if stored is None:
            raise LookupError("receipt handle is no longer valid")
        stored.visible_at = self._clock() + timeout_s
        if timeout_s == 0:
            self._arrived.set()

    async def max_receive_count(self) -> int | None:
        return self._max_receive
