"""Turns many concurrent single-item calls into few batched calls (SQS deletes, visibility changes).

`submit(item)` returns when the item's batch was flushed and raises the item's own error, so
callers keep one-item semantics while the service sees batches of up to `max_batch`. Batches form
naturally under load; an idle batcher flushes a lone item at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Generic, Self, TypeVar

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

    def __init__(self, flush: FlushFn[T], *, max_batch: int = 10, name: str = "batcher") -> None:
        self._flush_fn = flush
        self._max_batch = max_batch
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
        self.batches += 1
        for slot, error in zip(batch, results, strict=True):
            slot.error = error
            slot.done.set()

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            while self._queue:
                await self._flush(self._take())

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg, self._tg = self._tg, None
        if tg is None:
            return None
        with anyio.CancelScope(shield=True):
            while self._queue:  # what was handed over still goes out
                await self._flush(self._take())
        tg.cancel_scope.cancel()
        return await tg.__aexit__(exc_type, exc, tb)
