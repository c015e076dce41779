"""The instance's concurrent-call cap as one worker sees it: open, or blocked with one probe.

Connect refuses StartWebRTCContact with `LimitExceededException` while the instance holds as
many active contacts as its cap allows. Once a start is refused that way the gate is *blocked*:
the waiting starts queue by priority (oldest request first) and only one of them, the probe,
tries again after a backoff; every other waits without spending a call. The probe's success
opens the gate and releases everyone (the rate budget then paces them, oldest first); another
refusal doubles the backoff. The worker reads `blocked` to stop taking new work while it lasts.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import anyio
import structlog

from orchestrator.clock import Clock, SystemClock

log = structlog.get_logger("orchestrator.connect.capacity")


@dataclass(order=True)
class _Waiter:
    priority: float
    seq: int
    wakeup: anyio.Event = field(compare=False, default_factory=anyio.Event)
    gone: bool = field(compare=False, default=False)


class CapacityGate:
    """Open until a start is refused for the concurrent-call cap; then one probe at a time."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        first_probe_s: float = 1.0,
        max_probe_s: float = 15.0,
    ) -> None:
        self._clock = clock or SystemClock()
        self._first_probe_s = first_probe_s
        self._max_probe_s = max_probe_s
        self._probe_s = first_probe_s
        self._blocked = False
        self._probing = False
        self._next_probe = 0.0
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        #: Set (and replaced) whenever the gate opens or closes, for whoever watches it.
        self.changed = anyio.Event()
        self.refusals = 0

    @property
    def blocked(self) -> bool:
        return self._blocked

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.gone)

    def _flip(self, blocked: bool) -> None:
        if blocked != self._blocked:
            self._blocked = blocked
            self.changed.set()
            self.changed = anyio.Event()

    def _head(self) -> _Waiter | None:
        while self._waiters and self._waiters[0].gone:
            heapq.heappop(self._waiters)
        return self._waiters[0] if self._waiters else None

    def _wake_head(self) -> None:
        head = self._head()
        if head is not None:
            head.wakeup.set()

    async def admit(self, priority: float) -> None:
        """Return when this start may call Connect: at once while open; as the probe (lowest
        priority value first, one at a time, after the backoff) while blocked."""
        if not self._blocked:
            return
        me = _Waiter(priority, next(self._seq))
        heapq.heappush(self._waiters, me)
        self._wake_head()
        try:
            while self._blocked:
                if self._head() is me and not self._probing:
                    wait = self._next_probe - self._clock.monotonic()
                    if wait <= 0:
                        self._probing = True
                        return
                    await self._clock.sleep(wait, me.wakeup)
                else:
                    await me.wakeup.wait()
                me.wakeup = anyio.Event()
        finally:
            me.gone = True
            self._wake_head()

    def succeeded(self) -> None:
        """A start went through: the cap has room, everyone may go."""
        self._probing = False
        self._probe_s = self._first_probe_s
        if self._blocked:
            log.info("connect.capacity_available", waiting=self.waiting)
        self._flip(False)
        for waiter in self._waiters:
            waiter.wakeup.set()

    def refused(self) -> None:
        """A start was refused for the concurrent-call cap: block, and probe again later."""
        self.refusals += 1
        if not self._blocked:
            log.warning("connect.capacity_reached", detail="new starts wait for one probe")
        self._probing = False
        self._next_probe = self._clock.monotonic() + self._probe_s
        self._probe_s = min(self._max_probe_s, self._probe_s * 2)
        self._flip(True)
        self._wake_head()

    def released(self) -> None:
        """The probe ended some other way (an error, cancellation): let the next one try."""
        if self._probing:
            self._probing = False
            self._wake_head()
