"""Time, injectable: the lifecycle, watch and rate budget read and wait through a `Clock`."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import anyio
import anyio.lowlevel


class Bell:
    """A one-shot event that wakes sleepers: `set`, `is_set`, `wait` as `anyio.Event`, and
    `wait_at_most` (a sleep that the bell may cut short, with no cancel scope).

    A fraction of an `anyio.Event`'s size (which wraps an `asyncio.Event` and its deque, close to
    1 KiB): every watched contact has one for its doorbell and most have a poll waiting in a queue
    with one, so at 10,000 contacts they count. Nothing is allocated until someone waits. On the
    asyncio backend only, as the whole daemon (aiobotocore is asyncio)."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for future in waiters or ():
            _resolve(future)

    async def wait(self) -> None:
        """Until set (a checkpoint when it is already)."""
        if self._set:
            await anyio.lowlevel.checkpoint()
            return
        await self._until(asyncio.get_running_loop().create_future())

    async def wait_at_most(self, seconds: float) -> None:
        """Until set, or until `seconds` have passed."""
        if self._set:
            await anyio.lowlevel.checkpoint()
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(max(0.0, seconds), _resolve, future)
        try:
            await self._until(future)
        finally:
            timer.cancel()

    async def _until(self, future: asyncio.Future[None]) -> None:
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(future)
        try:
            await future  # a cancelled waiter's future is cancelled alone: each has its own
        finally:
            if self._waiters is not None and future in self._waiters:
                self._waiters.remove(future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (comparable with Connect's timestamps)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for intervals."""
        ...

    async def sleep(self, seconds: float, wake: Bell | anyio.Event | None = None) -> None:
        """Wait `seconds`, or less if `wake` is set meanwhile."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float, wake: Bell | anyio.Event | None = None) -> None:
        if wake is None:
            await anyio.sleep(max(0.0, seconds))
        elif isinstance(wake, Bell):
            await wake.wait_at_most(seconds)
        else:
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
