"""A virtual clock: time moves only when someone sleeps, and at once, so no test really waits."""

from __future__ import annotations

import anyio
import anyio.lowlevel


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

    async def sleep(self, seconds: float, wake: anyio.Event | None = None) -> None:
        await anyio.lowlevel.checkpoint()
        if wake is not None and wake.is_set():
            return
        self.slept.append(seconds)
        self.advance(seconds)
