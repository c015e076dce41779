"""The instance's concurrent-call cap as one worker sees it: open, or blocked with one probe.

Connect refuses StartWebRTCContact with `LimitExceededException` while the instance holds as
many active contacts as its cap allows. Once a start is refused that way the gate is *blocked*:
the waiting starts queue by priority (oldest request first) and only one of them, the probe,
tries again after a backoff; every other waits without spending a call. The probe's success
opens the gate and releases everyone (the rate budget then paces them, oldest first); another
refusal doubles the backoff. The worker reads `blocked` to stop taking new work while it lasts.
"""

from __future__ import annotations

import anyio
import structlog

from orchestrator import tracing
from orchestrator.clock import Clock, SystemClock
from orchestrator.waiters import Waiters

log = structlog.get_logger("orchestrator.connect.capacity")


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
        self._waiters = Waiters()
        #: Set (and replaced) whenever the gate opens or closes, for whoever watches it.
        self.changed = anyio.Event()
        self.refusals = 0

    @property
    def blocked(self) -> bool:
        return self._blocked

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _flip(self, blocked: bool) -> None:
        if blocked != self._blocked:
            self._blocked = blocked
            self.changed.set()
            self.changed = anyio.Event()

    async def admit(self, priority: float) -> None:
        """Return when this start may call Connect: at once while open; as the probe (lowest
        priority value first, one at a time, after the backoff) while blocked."""
        if not self._blocked:
            return
        with self._waiters.queued(priority) as me, tracing.waiting("capacity_gate"):
            while self._blocked:
                if self._waiters.head() is not me or self._probing:
                    await me.wait()
                    continue
                wait = self._next_probe - self._clock.monotonic()
                if wait <= 0:
                    self._probing = True
                    return
                await me.sleep(self._clock, wait)

    def succeeded(self) -> None:
        """A start went through: the cap has room, everyone may go."""
        self._probing = False
        self._probe_s = self._first_probe_s
        if self._blocked:
            log.info("connect.capacity_available", waiting=self.waiting)
        self._flip(False)
        self._waiters.wake_all()

    def refused(self) -> None:
        """A start was refused for the concurrent-call cap: block, and probe again later."""
        self.refusals += 1
        if not self._blocked:
            log.warning("connect.capacity_reached", detail="new starts wait for one probe")
        self._probing = False
        self._next_probe = self._clock.monotonic() + self._probe_s
        self._probe_s = min(self._max_probe_s, self._probe_s * 2)
        self._flip(True)
        self._waiters.wake_head()

    def released(self) -> None:
        """The probe ended some other way (an error, cancellation): let the next one try."""
        if self._probing:
            self._probing = False
            self._waiters.wake_head()
