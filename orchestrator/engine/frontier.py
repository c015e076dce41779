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

With contact events on, the heads do not poll; QUEUED events place contacts in the frontier
before any poll, and a connection confirmed after its event wakes the contacts it passed over:
those whose own CONNECTED_TO_AGENT event was lost. Enqueue times are compared to the millisecond,
the precision of Connect's timestamps.

Each queue keeps a FIFO score, learned three ways: a contact woken as "passed" turns out served or
not; a head that is still waiting although a younger contact of its queue was connected earlier is
a queue that does not serve oldest first; and every connection seen is checked against the recent
ones by Connect's own timestamps (an older contact that got its agent after a younger one is a
strike), so a queue whose agents pick contacts in another order is found out within a few
connections, whether or not its heads poll. Below the threshold the queue gets neither inferences
nor fast head polls (but for an occasional probe).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field

from orchestrator.connect.gateway import ContactSnapshot

#: Weight of the newest observation in a queue's FIFO score (an exponential moving average).
_FIFO_WEIGHT = 0.1
#: Below this score the queue is not treated as FIFO (one inference in two was wrong).
_FIFO_THRESHOLD = 0.5
#: While a queue is not treated as FIFO, every this many connections one inference is still
#: tried, so that a queue that becomes FIFO again is noticed.
_PROBE_EVERY = 20
#: Connections remembered per queue to judge the heads against.
_RECENT_CONNECTIONS = 64
#: Clock skew allowed between this worker and Connect's timestamps when a head is judged.
_SKEW_S = 1.0
#: Two connections count as out of order only if the older contact got its agent more than this
#: much later than the younger one (Connect's timestamps; agents answering at nearly the same
#: moment are no evidence).
_ORDER_SLACK_S = 1.0


def _ms(epoch_s: float) -> int:
    """Whole milliseconds: the precision of Connect's timestamps (contact events carry
    `2021-08-04T17:29:04.123Z`). Enqueue times are compared at that precision, so that two
    contacts enqueued within the same millisecond never count as one before the other, whichever
    source (an event, a poll) each time came from."""
    return math.floor(epoch_s * 1000 + 1e-3)


@dataclass(frozen=True)
class Poll:
    """What one poll of a watched contact found."""

    snapshot: ContactSnapshot
    #: When it was asked, epoch seconds.
    asked_at: float
    #: The contact no longer waits: connected, gone, or timed out.
    served: bool
    #: An agent took it within its deadline.
    took_agent: bool


@dataclass
class _Queue:
    #: (enqueued at, in ms; contact_id), sorted: index 0 is the oldest waiting contact.
    waiting: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class _Connections:
    #: (connected_at, enqueued_at) of the latest contacts seen connected, Connect's timestamps.
    recent: deque[tuple[float, float]] = field(
        default_factory=lambda: deque(maxlen=_RECENT_CONNECTIONS)
    )


class QueueFrontier:
    """The waiting contacts of each queue, in Connect's service order."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._where: dict[str, tuple[str, int]] = {}
        #: Contacts woken because they were passed, awaiting the poll that confirms it or not.
        self._suspects: dict[str, str] = {}
        #: Per queue: how often "enqueued before a connected contact" turned out to mean
        #: "served" (1.0 for a strict FIFO queue, near 0 for one whose agents pick contacts in
        #: another order), and how many connections were seen. Kept while the queue is empty.
        self._scores: dict[str, float] = {}
        self._connections: dict[str, int] = {}
        self._recent: dict[str, _Connections] = {}
        #: Per head: connections up to this time (Connect's clock) were already judged against it.
        self._judged_until: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._where)

    def waiting(self, contact_id: str, queue_id: str, enqueued_at: float) -> None:
        """`contact_id` waits in `queue_id` since `enqueued_at` (idempotent)."""
        at = _ms(enqueued_at)
        if self._where.get(contact_id) == (queue_id, at):
            return
        self.forget(contact_id)
        queue = self._queues.setdefault(queue_id, _Queue())
        bisect.insort(queue.waiting, (at, contact_id))
        self._where[contact_id] = (queue_id, at)

    def forget(self, contact_id: str) -> None:
        """`contact_id` no longer waits (connected, gone, or no longer watched here)."""
        self._suspects.pop(contact_id, None)
        self._judged_until.pop(contact_id, None)
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

    def place(self, contact_id: str) -> tuple[str, int] | None:
        """Where `contact_id` waits: (queue id, enqueue time in ms), or None if not known here."""
        return self._where.get(contact_id)

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
        younger contact, so in a FIFO queue these have been served (or left) too.

        Empty when the queue has shown it is not FIFO (but for an occasional probe). The contacts
        returned become suspects: their next poll tells whether the inference was right.
        """
        queue = self._queues.get(queue_id)
        if queue is None:
            return []
        seen = self._connections[queue_id] = self._connections.get(queue_id, 0) + 1
        if self.fifo_score(queue_id) < _FIFO_THRESHOLD and seen % _PROBE_EVERY:
            return []
        end = min(limit, bisect.bisect_left(queue.waiting, (_ms(enqueued_at), "")))
        found = [cid for _, cid in queue.waiting[:end]]
        for contact_id in found:
            self._suspects[contact_id] = queue_id
        return found

    def judge(self, contact_id: str, *, served: bool) -> bool:
        """A poll of `contact_id` found it served (connected or gone) or still waiting; if it was
        woken as passed, that confirms or refutes the FIFO inference for its queue (True: it
        did)."""
        queue_id = self._suspects.pop(contact_id, None)
        if queue_id is None:
            return False
        self._observe(queue_id, in_order=served)
        return True

    def fifo_score(self, queue_id: str) -> float:
        return self._scores.get(queue_id, 1.0)

    def fifo(self, queue_id: str) -> bool:
        """Whether `queue_id` is treated as serving its oldest contact first."""
        return self.fifo_score(queue_id) >= _FIFO_THRESHOLD

    def in_fifo_queue(self, contact_id: str) -> bool:
        """Whether `contact_id` is known to wait in a queue treated as serving oldest first."""
        place = self._where.get(contact_id)
        return place is not None and self.fifo(place[0])

    def is_head(self, contact_id: str, count: int) -> bool:
        """Whether `contact_id` is among the `count` oldest waiting contacts of a FIFO queue."""
        place = self._where.get(contact_id)
        if place is None or not self.fifo(place[0]):
            return False
        position = self.position(contact_id)
        return position is not None and position < count

    def head_total(self, count: int) -> int:
        """How many contacts poll as heads now: up to `count` per FIFO queue."""
        return sum(
            min(count, len(queue.waiting))
            for queue_id, queue in self._queues.items()
            if self.fifo(queue_id)
        )

    def connected(self, queue_id: str, enqueued_at: float, connected_at: float) -> None:
        """A contact of `queue_id` enqueued at `enqueued_at` got an agent at `connected_at`.

        Checked against the queue's recent connections (Connect's timestamps, so no clock skew):
        if an older contact got its agent clearly later than a younger one, either way round,
        the queue served out of order: one strike against its FIFO score.
        """
        recent = self._recent.setdefault(queue_id, _Connections()).recent
        if any(
            (c < connected_at - _ORDER_SLACK_S and e > enqueued_at)
            or (c > connected_at + _ORDER_SLACK_S and e < enqueued_at)
            for c, e in recent
        ):
            self._observe(queue_id, in_order=False)
        recent.append((connected_at, enqueued_at))

    def after_poll(
        self, poll: Poll, *, head_contacts: int, wake_limit: int
    ) -> tuple[bool, list[str]]:
        """What a poll teaches: where the contact waits, or that it left. Returns whether the
        poll judged a "passed" inference (see `judge`), and the contacts now due to poll: the new
        heads if a head left (`head_contacts` per queue; 0: no head polls), and up to
        `wake_limit` contacts an agent passed over to take this one."""
        snapshot, served = poll.snapshot, poll.served
        contact_id = snapshot.contact_id
        judged = self.judge(contact_id, served=served)
        queue_id, enqueued_at = snapshot.queue_id, snapshot.enqueued_at
        if queue_id is None or enqueued_at is None:
            return judged, []
        if not served:
            self.waiting(contact_id, queue_id, enqueued_at)
            if head_contacts and self.is_head(contact_id, head_contacts):
                self.still_waiting(contact_id, poll.asked_at, strike=not judged)
            return judged, []
        if snapshot.agent_connected_at is not None:
            self.connected(queue_id, enqueued_at, snapshot.agent_connected_at)
        place = self.position(contact_id)
        self.forget(contact_id)
        due: list[str] = []
        if place is not None and place < head_contacts and self.fifo(queue_id):
            # A head left: the line moved, and the new heads are the next to be served.
            due += self.heads(queue_id, head_contacts)
        if poll.took_agent:
            # FIFO: an agent took this contact, so those enqueued before it have been served
            # too. Wake a few, oldest first (each one found connected wakes the next in turn);
            # `passed` stops inferring for a queue where this keeps being wrong.
            due += self.passed(queue_id, enqueued_at, wake_limit)
        return judged, list(dict.fromkeys(due))

    def _observe(self, queue_id: str, *, in_order: bool) -> None:
        score = self.fifo_score(queue_id)
        self._scores[queue_id] = (1 - _FIFO_WEIGHT) * score + _FIFO_WEIGHT * in_order

    def still_waiting(self, contact_id: str, asked_at: float, *, strike: bool = True) -> None:
        """A head's poll, asked at `asked_at` (epoch seconds), found it still waiting. If a younger
        contact of its queue was connected before that (and after the head's last such check),
        the queue did not serve its oldest contact first: one strike against its FIFO score
        (`strike=False`: the same poll already counted, as a refuted "passed" inference)."""
        place = self._where.get(contact_id)
        if place is None:
            return
        queue_id, enqueued_at = place
        since = self._judged_until.get(contact_id, float("-inf"))
        until = asked_at - _SKEW_S
        if until <= since:
            return
        self._judged_until[contact_id] = until
        recent = self._recent.get(queue_id)
        if recent is None:
            return
        if strike and any(since < c <= until and _ms(e) > enqueued_at for c, e in recent.recent):
            self._observe(queue_id, in_order=False)
