"""Time, injectable: the lifecycle, watch and rate budget read and wait through a `Clock`."""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (comparable with Connect's timestamps)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for intervals."""
        ...

    async def sleep(self, seconds: float, wake: anyio.Event | None = None) -> None:
        """Wait `seconds`, or less if `wake` is set meanwhile."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float, wake: anyio.Event | None = None) -> None:
        if wake is None:
            await anyio.sleep(max(0.0, seconds))
            return
        with anyio.move_on_after(max(0.0, seconds)):
            await wake.wait()


async def wait_first(*events: anyio.Event | None) -> None:
    """Return as soon as any of `events` is set (None entries are ignored)."""
    waiting = [event for event in events if event is not None]
    if any(event.is_set() for event in waiting):
        return
    async with anyio.create_task_group() as tg:

        async def one(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in waiting:
            tg.start_soon(one, event)
