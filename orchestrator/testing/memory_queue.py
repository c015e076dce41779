"""An in-memory `QueueSource` with SQS's visibility semantics, for benchmarks and tests that must
not measure a local SQS server (the contract tests run it beside the real SQS source)."""

from __future__ import annotations

import heapq
import itertools
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from orchestrator.sqs import QueueMessage


@dataclass
class _Stored:
    message_id: str
    body: str
    group_id: str | None
    sent_at: float
    receive_count: int = 0
    #: Bumped whenever the message's visibility changes: older index entries are stale.
    generation: int = 0
    receipt: str | None = None


class MemoryQueue:
    """An in-memory queue with SQS's visibility semantics and an optional dead-letter list.

    Visible messages wait in arrival order; hidden ones in a heap by the time they reappear, so
    a receive costs O(batch + log n) however many messages the queue holds.
    """

    def __init__(
        self,
        *,
        max_receive_count: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._messages: dict[str, _Stored] = {}
        self._by_receipt: dict[str, str] = {}
        self._visible: deque[tuple[str, int]] = deque()
        self._hidden: list[tuple[float, int, str, int]] = []
        self._max_receive = max_receive_count
        self._clock = clock
        self._seq = itertools.count()
        self._arrived = anyio.Event()
        self.dead_letters: list[str] = []

    def send(self, body: str, *, group_id: str | None = None) -> str:
        message_id = str(uuid.uuid4())
        self._messages[message_id] = _Stored(message_id, body, group_id, time.time())
        self._visible.append((message_id, 0))
        self._arrived.set()
        return message_id

    def __len__(self) -> int:
        return len(self._messages)

    def _current(self, message_id: str, generation: int) -> _Stored | None:
        stored = self._messages.get(message_id)
        return stored if stored is not None and stored.generation == generation else None

    def _hide(self, stored: _Stored, until: float) -> None:
        stored.generation += 1
        heapq.heappush(self._hidden, (until, next(self._seq), stored.message_id, stored.generation))

    def _show(self, stored: _Stored) -> None:
        stored.generation += 1
        self._visible.append((stored.message_id, stored.generation))
        self._arrived.set()

    def _take(self, max_messages: int, visibility_timeout_s: int) -> list[QueueMessage]:
        now = self._clock()
        while self._hidden and self._hidden[0][0] <= now:
            _, _, message_id, generation = heapq.heappop(self._hidden)
            stored = self._current(message_id, generation)
            if stored is not None:
                self._show(stored)
        batch: list[QueueMessage] = []
        while self._visible and len(batch) < max_messages:
            stored = self._current(*self._visible.popleft())
            if stored is None:
                continue
            if self._max_receive is not None and stored.receive_count >= self._max_receive:
                del self._messages[stored.message_id]
                self.dead_letters.append(stored.body)
                continue
            stored.receive_count += 1
            self._hide(stored, now + visibility_timeout_s)
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
                    stored.sent_at,
                )
            )
        return batch

    async def receive(
        self, max_messages: int, *, wait_time_s: float, visibility_timeout_s: int
    ) -> list[QueueMessage]:
        with anyio.move_on_after(wait_time_s):
            while True:
                batch = self._take(max_messages, visibility_timeout_s)
                if batch:
                    return batch
                self._arrived = anyio.Event()
                wake_in = self._hidden[0][0] - self._clock() if self._hidden else wait_time_s
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
        if timeout_s == 0:
            self._show(stored)
        else:
            self._hide(stored, self._clock() + timeout_s)

    async def max_receive_count(self) -> int | None:
        return self._max_receive
