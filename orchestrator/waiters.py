"""Waiters served by priority: the lowest `priority` value first, then arrival order.

The rate budget's buckets, the capacity gate, the fleet budget and the Connect client's
connections (`Slots`) all queue callers this way (oldest contact first): one implementation of
the queue, each deciding when its head may go.

A caller may wait with a `Priority` instead of a number and `lower` it while it waits: the queue
moves it forward at once, without it leaving and losing its place (a poll queued at its contact's
age becomes a confirmation when a contact event says something happened).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from orchestrator.clock import Bell, Clock


class Priority:
    """A place in line (lower values are served first) that its holder may move forward."""

    def __init__(self, value: float) -> None:
        self._value = value
        #: The queues it waits in now.
        self._queues: list[Waiters] = []

    @property
    def value(self) -> float:
        return self._value

    def lower(self, value: float) -> None:
        """Move forward to `value` in every queue it waits in; a higher value changes nothing."""
        if value >= self._value:
            return
        self._value = value
        for queue in self._queues:
            queue.reorder()

    def entered(self, queue: Waiters) -> None:
        self._queues.append(queue)

    def left(self, queue: Waiters) -> None:
        self._queues.remove(queue)


@dataclass(order=True, slots=True)
class Waiter:
    priority: float
    seq: int
    #: Set to wake this waiter; the waiter replaces it (`rearm`) before waiting again.
    wakeup: Bell = field(compare=False, default_factory=Bell)
    gone: bool = field(compare=False, default=False)
    #: Where `priority` comes from when the caller may lower it while it waits.
    ticket: Priority | None = field(compare=False, default=None)

    def rearm(self) -> None:
        self.wakeup = Bell()

    async def wait(self) -> None:
        """Until woken; then rearm."""
        await self.wakeup.wait()
        self.rearm()

    async def sleep(self, clock: Clock, seconds: float) -> None:
        """Until woken or until `seconds` have passed on `clock`; then rearm."""
        await clock.sleep(seconds, self.wakeup)
        self.rearm()


class Waiters:
    """A priority queue of waiters; a waiter that leaves is dropped lazily."""

    def __init__(self) -> None:
        self._heap: list[Waiter] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return sum(1 for waiter in self._heap if not waiter.gone)

    def join(self, priority: Priority | float) -> Waiter:
        """Queue a new waiter. The head is woken: a new head may have to wait less (or more)
        than the old one planned, so it re-plans."""
        if isinstance(priority, Priority):
            me = Waiter(priority.value, next(self._seq), ticket=priority)
            priority.entered(self)
        else:
            me = Waiter(priority, next(self._seq))
        heapq.heappush(self._heap, me)
        head = self.head()
        if head is not None and head is not me:
            head.wakeup.set()
        return me

    def queued(self, priority: Priority | float) -> Queued:
        """A waiter in the queue for the block (`join`, then `leave`, however the block ends)."""
        return Queued(self, priority)

    def head(self) -> Waiter | None:
        while self._heap and self._heap[0].gone:
            heapq.heappop(self._heap)
        return self._heap[0] if self._heap else None

    def leave(self, waiter: Waiter) -> None:
        """`waiter` is done (served, or cancelled); if it was the head, the next one is woken."""
        was_head = self.head() is waiter
        waiter.gone = True
        if waiter.ticket is not None:
            waiter.ticket.left(self)
            waiter.ticket = None
        if was_head:
            self.wake_head()

    def reorder(self) -> None:
        """A waiter's `Priority` was lowered: sort again, and wake the head (it may be that
        waiter now, or the old head, which re-plans)."""
        for waiter in self._heap:
            if waiter.ticket is not None:
                waiter.priority = waiter.ticket.value
        heapq.heapify(self._heap)
        self.wake_head()

    def wake_head(self) -> None:
        head = self.head()
        if head is not None:
            head.wakeup.set()

    def wake_all(self) -> None:
        for waiter in self._heap:
            waiter.wakeup.set()

    def pop(self) -> Waiter | None:
        """Take the head out of the queue (None when nobody waits)."""
        head = self.head()
        if head is not None:
            heapq.heappop(self._heap)
        return head


class Slots:
    """At most `size` holders at once; the others wait by priority (a semaphore whose queue is
    `Waiters`)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("Slots needs a size of at least 1")
        self.size = size
        self._free = size
        self._waiters = Waiters()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def held(self, priority: Priority | float) -> Held:
        """A slot for the block: at once if one is free and nobody waits, else in turn."""
        return Held(self, priority)

    async def take(self, priority: Priority | float) -> None:
        """Take a slot (`give_back` it after): at once if one is free and nobody waits, else in
        turn."""
        if self._free > 0 and self._waiters.head() is None:
            self._free -= 1
            return
        with self._waiters.queued(priority) as me:
            while self._free == 0 or self._waiters.head() is not me:
                await me.wait()
            self._free -= 1

    def give_back(self) -> None:
        self._free += 1
        self._waiters.wake_head()


# The blocks below are classes, not generator-based context managers (docs/design.md, "What a
# watched contact holds").


class Queued:
    """`Waiters.queued`'s block: the waiter joins on entry and leaves on exit."""

    __slots__ = ("_me", "_priority", "_waiters")

    def __init__(self, waiters: Waiters, priority: Priority | float) -> None:
        self._waiters, self._priority = waiters, priority
        self._me: Waiter | None = None

    def __enter__(self) -> Waiter:
        self._me = self._waiters.join(self._priority)
        return self._me

    def __exit__(self, *exc: object) -> None:
        if self._me is not None:
            self._waiters.leave(self._me)
            self._me = None


class Held:
    """`Slots.held`'s block: a slot taken on entry and given back on exit."""

    __slots__ = ("_priority", "_slots")

    def __init__(self, slots: Slots, priority: Priority | float) -> None:
        self._slots, self._priority = slots, priority

    async def __aenter__(self) -> None:
        await self._slots.take(self._priority)

    async def __aexit__(self, *exc: object) -> None:
        self._slots.give_back()
