"""Coalesces events from many concurrent lifecycles into batches for one downstream sink.

Each `publish` call waits until its own events are delivered (or their batch failed), so the
at-least-once promise holds: a lifecycle never moves on, and a message is never acknowledged,
before its events are out. Batches form naturally under load and add no delay when idle.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

from orchestrator.batcher import Batcher
from orchestrator.engine.events import EventSink, LifecycleEvent


class BatchingSink:
    """`async with BatchingSink(inner) as sink:` runs the flusher for the block's lifetime;
    outside such a block each publish goes straight through."""

    def __init__(self, inner: EventSink, *, max_batch: int = 10) -> None:
        self.inner = inner
        self.name = inner.name
        self._batcher: Batcher[Sequence[LifecycleEvent]] = Batcher(
            self._flush, max_batch=max_batch, name=f"events.{inner.name}"
        )

    @property
    def batches(self) -> int:
        return self._batcher.batches

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        await self._batcher.submit(events)

    async def _flush(
        self, publishes: list[Sequence[LifecycleEvent]]
    ) -> Sequence[BaseException | None]:
        await self.inner.publish([e for events in publishes for e in events])
        return [None] * len(publishes)

    async def __aenter__(self) -> Self:
        await self._batcher.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._batcher.__aexit__(*exc_info)
