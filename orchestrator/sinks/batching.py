"""Coalesces events from many concurrent lifecycles into batches for one downstream sink.

Each `publish` call waits until its own events are delivered (or their batch failed), so the
at-least-once promise holds: a lifecycle never moves on, and a message is never acknowledged,
before its events are out. Batches form naturally under load and add no delay when idle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import anyio
from anyio.abc import TaskGroup

from ..events import LifecycleEvent
from .base import EventSink


@dataclass
class _Pending:
    events: Sequence[LifecycleEvent]
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None


class BatchingSink:
    """`async with BatchingSink(inner) as sink:` runs the flusher for the block's lifetime."""

    def __init__(self, inner: EventSink, *, max_batch: int = 10) -> None:
        self.inner = inner
        self.name = inner.name
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._ready = anyio.Event()
        self._tg: TaskGroup | None = None
        self.batches = 0

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        if self._tg is None:
            await self.inner.publish(events)  # not running as a context manager: pass through
            return
        pending = _Pending(events)
        self._queue.append(pending)
        self._ready.set()
        with anyio.CancelScope(shield=True):
            # Shielded: once handed over, a delivery's outcome must be known before returning.
            await pending.done.wait()
        if pending.error is not None:
            raise pending.error

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        size = 0
        while self._queue and (not batch or size + len(self._queue[0].events) <= self._max_batch):
            item = self._queue.pop(0)
            batch.append(item)
            size += len(item.events)
        return batch

    async def _flush_forever(self) -> None:
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            while self._queue:
                await self._flush(self._take_batch())

    async def _flush(self, batch: list[_Pending]) -> None:
        events = [e for item in batch for e in item.events]
        try:
            await self.inner.publish(events)
        except Exception as exc:  # handed to every waiter of this batch
            for item in batch:
                item.error = exc
        finally:
            self.batches += 1
            for item in batch:
                item.done.set()

    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._flush_forever)
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
            while self._queue:  # deliver what was handed over before closing
                await self._flush(self._take_batch())
        tg.cancel_scope.cancel()
        return await tg.__aexit__(exc_type, exc, tb)
