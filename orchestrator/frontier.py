"""Which watched contacts are next in their Connect queue.

A Connect queue hands contacts to agents oldest first (FIFO by enqueue time, within a routing
priority). So among the contacts this worker watches in one queue, the ones enqueued earliest are
the next to connect, and once a contact enqueued at T is seen connected, every contact enqueued
before T has most likely been connected (or has hung up) too. The watch uses both facts:

* the `head` contacts of each queue (the oldest waiting ones) poll at a short fixed interval, since
  they are the ones an agent is about to take;
* when a contact is seen connected, the oldest contacts enqueued before it (a few: each of them,
  once seen connected, wakes the next ones) and the new heads are woken to poll at once.

Everything else keeps its exponential backoff, which stays the fallback when the FIFO assumption
does not hold (priorities, several routing profiles): the policy then only spends a few extra polls.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass
class _Queue:
    #: (enqueued_at, contact_id), sorted: index 0 is the oldest waiting contact.
    waiting: list[tuple[float, str]] = field(default_factory=list)


class QueueFrontier:
    """The waiting contacts of each queue, in Connect's service order."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._where: dict[str, tuple[str, float]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def waiting(self, contact_id: str, queue_id: str, enqueued_at: float) -> None:
        """`contact_id` waits in `queue_id` since `enqueued_at` (idempotent)."""
        if self._where.get(contact_id) == (queue_id, enqueued_at):
            return
        self.forget(contact_id)
        queue = self._queues.setdefault(queue_id, _Queue())
        bisect.insort(queue.waiting, (enqueued_at, contact_id))
        self._where[contact_id] = (queue_id, enqueued_at)

    def forget(self, contact_id: str) -> None:
        """`contact_id` no longer waits (connected, gone, or no longer watched here)."""
        place = self._where.pop(contact_id, None)
        if place is None:
            return
        queue_id, enqueued_at = place
        queue = self._queues[queue_id]
        index = bisect.bisect_left(queue.waiting, (enqueued_at, contact_id))
        if index < len(queue.waiting) and queue.waiting[index][1] == contact_id:
            del queue.waiting[index]
        if not queue.waiting:
            del self._queues[queue_id]

    def position(self, contact_id: str) -> int | None:
        """How many watched contacts wait ahead of `contact_id` in its queue (None: unknown)."""
        place = self._where.get(contact_id)
        if place is None:
            return None
        queue_id, enqueued_at = place
        return bisect.bisect_left(self._queues[queue_id].waiting, (enqueued_at, contact_id))

    def heads(self, queue_id: str, count: int) -> list[str]:
        """The `count` oldest waiting contacts of `queue_id`: the next ones an agent takes."""
        queue = self._queues.get(queue_id)
        return [cid for _, cid in queue.waiting[:count]] if queue else []

    def passed(self, queue_id: str, enqueued_at: float, limit: int) -> list[str]:
        """The oldest `limit` waiting contacts enqueued before `enqueued_at`: an agent took a
        younger contact, so these have most likely been served (or left) too."""
        queue = self._queues.get(queue_id)
        if queue is None:
            return []
        end = min(limit, bisect.bisect_left(queue.waiting, (enqueued_at, "")))
        return [cid for _, cid in queue.waiting[:end]]
