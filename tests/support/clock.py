"""Clocks for tests: time moves when the test (or a sleeper) says so, so no test really waits."""

from __future__ import annotations

import anyio
import anyio.lowlevel

from orchestrator.clock import Bell


class VirtualClock:
    """Shared by the emulator (`clock=vclock.time`) and the orchestrator (`clock=vclock`).

    Every `sleep` advances time by its duration immediately. This is exact for one sequential
    lifecycle, which is what the watch-policy tests drive.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._start = start
        self._now = start
        self.slept: list[float] = []

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now - self._start

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)

    async def sleep(self, seconds: float, wake: Bell | anyio.Event | None = None) -> None:
        await anyio.lowlevel.checkpoint()
        if wake is not None and wake.is_set():
            return
        self.slept.append(seconds)
        self.advance(seconds)


class SteppingClock:
    """A clock that moves only when the test calls `advance`; sleepers wait for it (or `wake`).

    Unlike `VirtualClock`, a sleep here really blocks, so a test can act while the code under test
    sleeps (ring a doorbell, line up waiters) and then move time on purpose.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._start = start
        self._now = start
        self._moved = anyio.Event()
        #: How many sleeps are in progress now, and how many have begun in all.
        self.sleeping = 0
        self.sleeps = 0
        #: When each sleep in progress ends.
        self._until: list[float] = []

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now - self._start

    def advance(self, seconds: float) -> None:
        self._now += seconds
        moved, self._moved = self._moved, anyio.Event()
        moved.set()

    @property
    def due(self) -> int:
        """How many sleeps have reached their end but have not returned yet."""
        return sum(1 for until in self._until if until <= self._now)

    async def sleep(self, seconds: float, wake: Bell | anyio.Event | None = None) -> None:
        until = self._now + max(0.0, seconds)
        self.sleeping += 1
        self.sleeps += 1
        self._until.append(until)
        try:
            await anyio.lowlevel.checkpoint()
            while self._now < until and not (wake is not None and wake.is_set()):
                await _first_of(self._moved, wake)
        finally:
            self.sleeping -= 1
            self._until.remove(until)


async def _first_of(*events: anyio.Event | Bell | None) -> None:
    """Wait until any of `events` is set."""
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event | Bell) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            if event is not None:
                tg.start_soon(wait, event)
