"""Waiters served by priority: the lowest `priority` value first, then arrival order.

The rate budget's buckets, the capacity gate and the fleet budget all queue callers this way
(oldest contact first): one implementation of the queue, each deciding when its head may go.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import anyio


@dataclass(order=True)
class Waiter:
    priority: float
    seq: int
    #: Set to wake this waiter; the waiter replaces it (`rearm`) before waiting again.
    wakeup: anyio.Event = field(compare=False, default_factory=anyio.Event)
    gone: bool = field(compare=False, default=False)

    def rearm(self) -> None:
        self.wakeup = anyio.Event()


class Waiters:
    """A priority queue of waiters; a waiter that leaves is dropped lazily."""

    def __init__(self) -> None:
        self._heap: list[Waiter] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return sum(1 for waiter in self._heap if not waiter.gone)

    def join(self, priority: float) -> Waiter:
        """Queue a new waiter. The head is woken: a new head may have to wait less (or more)
        than the old one planned, so it re-plans."""
        me = Waiter(priority, next(self._seq))
        heapq.heappush(self._heap, me)
        head = self.head()
        if head is not None and head is not me:
            head.wakeup.set()
        return me

    def head(self) -> Waiter | None:
        while self._heap and self._heap[0].gone:
            heapq.heappop(self._heap)
        return self._heap[0] if self._heap else None

    def leave(self, waiter: Waiter) -> None:
        """`waiter` is done (served, or cancelled); if it was the head, the next one is woken."""
        was_head = self.head() is waiter
        waiter.gone = True
        if was_head:
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
