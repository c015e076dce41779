"""The messages a worker holds: which are in flight, which have their contact started, keeping
them hidden while they run (a visibility heartbeat), and settling each one exactly once.

Settling is an ack (delete: the request has its final event) or a hand-back (the message becomes
visible again after a delay). Both run shielded from cancellation and wait for a visibility
extension in progress, which must not land after them; the message counts as held until then
(it is still hidden in the queue), and no extension starts once its settling has begun.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import structlog

from orchestrator.clock import Clock
from orchestrator.metrics import Metrics
from orchestrator.sqs import QueueMessage, QueueSource

log = structlog.get_logger("orchestrator.daemon.leases")


@dataclass(eq=False, slots=True)
class Lease:
    """One held message."""

    message: QueueMessage
    visible_until: float
    #: The lifecycle is past StartWebRTCContact: it now counts as a watch, not as waiting.
    started: bool = False
    #: Cancels this message's lifecycle (used at shutdown for those not started yet).
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    #: Set while a visibility extension is on its way, so a settle can wait for it.
    extending: anyio.Event | None = None
    #: Being acked or handed back: no extension starts any more.
    settling: bool = False

    async def settled(self) -> None:
        if self.extending is not None:
            await self.extending.wait()


class Leases:
    """The in-flight table of one worker."""

    def __init__(
        self,
        source: QueueSource,
        *,
        visibility_timeout_s: int,
        metrics: Metrics,
        clock: Clock,
        unstarted_visibility_timeout_s: int | None = None,
    ) -> None:
        #: The queue the messages came from (tests may wrap it to record calls).
        self.source = source
        self._timeout = visibility_timeout_s
        #: Until its contact starts a message is hidden for less: a crash then hides the few
        #: unstarted messages only briefly (they are what another worker can start at once).
        self.unstarted_timeout = min(
            visibility_timeout_s, unstarted_visibility_timeout_s or visibility_timeout_s
        )
        self._metrics = metrics
        self._clock = clock
        self._held: dict[str, Lease] = {}
        self._waiting = 0
        #: The most messages held unstarted at once since `most_waiting()` was last read.
        self._most_waiting = 0
        #: Acks and hand-backs on their way to the queue (released, not yet settled).
        self.settling = 0
        #: Set (and replaced) whenever a lease is released or its contact starts.
        self.changed = anyio.Event()

    def __len__(self) -> int:
        return len(self._held)

    @property
    def waiting_to_start(self) -> int:
        return self._waiting

    def most_waiting(self) -> int:
        """The high-water mark of unstarted messages since the last call (then reset)."""
        most, self._most_waiting = self._most_waiting, self._waiting
        return most

    def holds(self, message: QueueMessage) -> bool:
        return message.receipt in self._held

    def unstarted(self) -> list[Lease]:
        return [lease for lease in self._held.values() if not lease.started]

    def _notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()

    def take(self, message: QueueMessage) -> Lease:
        lease = Lease(message, self._clock.monotonic() + self.unstarted_timeout)
        self._held[message.receipt] = lease
        self._waiting += 1
        self._most_waiting = max(self._most_waiting, self._waiting)
        self._metrics.in_flight.inc()
        self._metrics.waiting_to_start.set(self._waiting)
        return lease

    def mark_started(self, lease: Lease) -> None:
        if not lease.started and lease.message.receipt in self._held:
            lease.started = True
            self._waiting -= 1
            self._metrics.waiting_to_start.set(self._waiting)
            self._notify()

    def _release(self, message: QueueMessage) -> Lease | None:
        lease = self._held.pop(message.receipt, None)
        if lease is not None:
            if not lease.started:
                self._waiting -= 1
                self._metrics.waiting_to_start.set(self._waiting)
            self._metrics.in_flight.dec()
            self._notify()
        return lease

    async def ack(self, message: QueueMessage) -> bool:
        """Delete the message: its request is done for good."""
        if await self._settle(message, 0, delete=True, reason="ack"):
            self._metrics.messages_acknowledged.inc()
            return True
        return False

    async def hand_back(self, message: QueueMessage, delay_s: int, *, reason: str) -> bool:
        """Make the message visible again after `delay_s` seconds (0: at once)."""
        if await self._settle(message, delay_s, delete=False, reason=reason):
            self._metrics.messages_handed_back.labels(reason).inc()
            return True
        return False

    def drop(self, message: QueueMessage) -> None:
        """Forget a message without settling it (already settled, or left to its timeout)."""
        self._release(message)

    async def _settle(
        self, message: QueueMessage, delay_s: int, *, delete: bool, reason: str
    ) -> bool:
        lease = self._held.get(message.receipt)
        if lease is not None:
            lease.settling = True
        self.settling += 1
        try:
            with anyio.CancelScope(shield=True):
                if lease is not None:
                    # Held (and counted against the worker's room) until an extension on its
                    # way is over: released earlier, it would let the worker receive another
                    # message while this one is still hidden in the queue.
                    await lease.settled()
                # Released and handed to the queue with no await between.
                self._release(message)
                try:
                    if delete:
                        await self.source.delete(message)
                    else:
                        await self.source.change_visibility(message, delay_s)
                except Exception as exc:
                    if delete:
                        # The message reappears after its visibility timeout and is processed
                        # again: same ClientTokens, same contact, duplicate events, same ids.
                        log.error("queue.delete_failed", error=repr(exc))
                    else:
                        log.error("queue.hand_back_failed", error=repr(exc), reason=reason)
                    return False
                return True
            return False  # only reached if the shielded scope were cancelled from inside
        finally:
            self.settling -= 1
            self._notify()

    # -- visibility heartbeat ------------------------------------------------------------------

    def _timeout_of(self, lease: Lease) -> int:
        return self._timeout if lease.started else self.unstarted_timeout

    async def heartbeat(self) -> None:
        """Extend the visibility of messages whose lifecycle outlives half their timeout (the
        short one until the contact starts, the full one after).

        Each extension goes out on its own: a beat does not wait for the last beat's calls, so
        one slow call (a busy queue service) does not hold back the messages that fall due
        meanwhile; a message whose extension is still on its way is not asked for again."""
        interval = max(0.5, self.unstarted_timeout / 12)
        asked: set[Lease] = set()
        async with anyio.create_task_group() as tg:
            while True:
                await self._clock.sleep(interval)
                now = self._clock.monotonic()
                for lease in self._held.values():
                    if lease not in asked and (
                        lease.visible_until - now < self._timeout_of(lease) / 2
                    ):
                        asked.add(lease)
                        tg.start_soon(self._extend, lease, asked)

    async def _extend(self, lease: Lease, asked: set[Lease]) -> None:
        try:
            await self._extend_held(lease)
        finally:
            asked.discard(lease)

    async def _extend_held(self, lease: Lease) -> None:
        if lease.settling or self._held.get(lease.message.receipt) is not lease:
            # Settled since the beat chose it (this task starts a scheduler turn later): an
            # extension now would hide a handed-back message for the full timeout, where a
            # draining worker no longer looks for it. Checked and marked with no await between,
            # so a settle from now on waits for this extension (`Lease.settled`).
            return
        timeout = self._timeout_of(lease)
        asked_at = self._clock.monotonic()
        lease.extending = anyio.Event()
        try:
            await self.source.change_visibility(lease.message, timeout)
        except Exception as exc:
            if lease.message.receipt in self._held:  # still ours: retried next beat
                self._metrics.visibility_extensions.labels("error").inc()
                log.warning(
                    "queue.visibility_extension_failed",
                    message_id=lease.message.message_id,
                    error=repr(exc),
                )
            return
        finally:
            lease.extending.set()
            lease.extending = None
        lease.visible_until = asked_at + timeout
        self._metrics.visibility_extensions.labels("ok").inc()
