"""Turns many concurrent single-item calls into few batched calls (SQS deletes, visibility changes).

`submit(item)` returns when the item's batch was flushed and raises the item's own error, so
callers keep one-item semantics while the service sees batches of up to `max_batch`. Up to
`max_in_flight` batches are out at once; batches form naturally under load (items gather while the
flushes are out) and an idle batcher flushes a lone item at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Self, TypeVar

import anyio
from anyio.abc import TaskGroup

T = TypeVar("T")

#: Flushes a batch; returns one entry per item: None for success, else that item's error.
FlushFn = Callable[[list[T]], Awaitable[Sequence[BaseException | None]]]


@dataclass
class _Slot(Generic[T]):
    item: T
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None


class Batcher(Generic[T]):
    """`async with Batcher(flush) as batcher: await batcher.submit(item)`."""

    def __init__(
        self,
        flush: FlushFn[T],
        *,
        max_batch: int = 10,
        max_in_flight: int = 4,
        name: str = "batcher",
    ) -> None:
        self._flush_fn = flush
        self._max_batch = max_batch
        #: Batches being flushed at once: under load, items gather while these are out.
        self._in_flight = anyio.CapacityLimiter(max_in_flight)
        self.name = name
        self._queue: list[_Slot[T]] = []
        self._ready = anyio.Event()
        self._tg: TaskGroup | None = None
        self.batches = 0

    async def submit(self, item: T) -> None:
        """Hand `item` over and wait for its batch. Shielded: once handed over, the outcome of
        the call must be known (an acknowledgement is never left half-done by a cancellation)."""
        slot = _Slot(item)
        self._queue.append(slot)
        self._ready.set()
        with anyio.CancelScope(shield=True):
            if self._tg is None:  # not running as a context manager: flush this item alone
                self._queue.remove(slot)
                await self._flush([slot])
            await slot.done.wait()
        if slot.error is not None:
            raise slot.error

    def _take(self) -> list[_Slot[T]]:
        batch = self._queue[: self._max_batch]
        del self._queue[: self._max_batch]
        return batch

    async def _flush(self, batch: list[_Slot[T]]) -> None:
        if not batch:
            return
        try:
            results = list(await self._flush_fn([slot.item for slot in batch]))
        except Exception as exc:  # the whole call failed: every item gets the error
            results = [exc] * len(batch)
        except BaseException:  # cancelled: nobody may wait forever for this batch
            for slot in batch:
                slot.error = RuntimeError(f"{self.name}: batch cancelled before it was sent")
                slot.done.set()
            raise
        self.batches += 1
        for slot, error in zip(batch, results, strict=True):
            slot.error = error
            slot.done.set()

    async def _run(self) -> None:
        async with anyio.create_task_group() as flushes:
            while True:
                await self._ready.wait()
                self._ready = anyio.Event()
                while self._queue:
                    # A CapacityLimiter token belongs to its borrower (by default the acquiring
                    # task); the flush task releases it, so borrow it on behalf of the batch.
                    borrower = object()
                    await self._in_flight.acquire_on_behalf_of(borrower)
                    flushes.start_soon(self._flush_then_release, self._take(), borrower)

    async def _flush_then_release(self, batch: list[_Slot[T]], borrower: object) -> None:
        try:
            await self._flush(batch)
        finally:
            self._in_flight.release_on_behalf_of(borrower)

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._run)
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        tg, self._tg = self._tg, None
        if tg is None:
            return None
        with anyio.CancelScope(shield=True):
            while self._queue:  # what was handed over still goes out
                await self._flush(self._take())
            # ...and the batches already out finish: take every flush slot once.
            holders = [object() for _ in range(int(self._in_flight.total_tokens))]
            for holder in holders:
                await self._in_flight.acquire_on_behalf_of(holder)
            for holder in holders:
                self._in_flight.release_on_behalf_of(holder)
        tg.cancel_scope.cancel()
        return await tg.__aexit__(*exc_info)
