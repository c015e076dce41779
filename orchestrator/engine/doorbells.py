"""Doorbells: how a watch is woken before its pause ends, and what the watches of one engine share.

Each watch has a `Doorbell`; `ContactNotifier.ring(contact_id)` rings the doorbells of a contact
(Connect contact events, queue-aware polling); a rung watch polls at once and `rearm`s its
doorbell, and a watch woken by a contact event polls at top priority (the budget goes to
confirmations first). An event that rings while the watch's poll already waits for its token
lowers that poll's `Priority` (`Doorbell.lifting`): the poll becomes the confirmation. Polling
stays the fallback: a lost notification costs at most one pause.

The notifier also keeps where the watched contacts wait (the queue frontier, `frontier.py`): the
watch asks it where its contact stands (`standing`, for its pause) and tells it what each poll
found (`polled`), which wakes the contacts the frontier says are due.

A contact event can come before anyone here watches its contact (it can beat StartWebRTCContact's
answer, or the watch's subscription). A notifier built with `EarlyEvents` keeps such a ring, and
the queue place a QUEUED event tells, for a while: a watch that subscribes meanwhile is rung (and
placed) at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from orchestrator.clock import Bell, Clock, SystemClock
from orchestrator.engine.frontier import Poll, QueueFrontier
from orchestrator.engine.pause import Standing
from orchestrator.metrics import Metrics
from orchestrator.waiters import Priority

V = TypeVar("V")

#: Where a contact waits: (queue id, enqueue time in epoch seconds).
Place = tuple[str, float]


class Expiring(Generic[V]):
    """Keys (each with a value) remembered for `ttl_s`, at most `limit` of them (the oldest go
    first)."""

    def __init__(self, ttl_s: float, limit: int) -> None:
        self._ttl_s = ttl_s
        self._limit = limit
        self._until: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def expire(self, now: float) -> list[str]:
        """Drop and return the keys whose time is up (and the oldest beyond the limit)."""
        gone: list[str] = []
        while self._until and (
            len(self._until) > self._limit or next(iter(self._until.values()))[0] <= now
        ):
            gone.append(self._until.popitem(last=False)[0])
        return gone

    def add(self, key: str, now: float, value: V) -> None:
        self._until[key] = (now + self._ttl_s, value)
        self._until.move_to_end(key)

    def get(self, key: str, now: float) -> V | None:
        """The key's value, kept; None if it was not kept or its time is up."""
        kept = self._until.get(key)
        return kept[1] if kept is not None and kept[0] > now else None

    def pop(self, key: str, now: float) -> V | None:
        """The key's value, forgotten; None if it was not kept or its time is up."""
        kept = self._until.pop(key, None)
        return kept[1] if kept is not None and kept[0] > now else None

    def __contains__(self, key: str) -> bool:
        return key in self._until


class EarlyEvents:
    """What contact events said about contacts nobody here watches yet, kept `ttl_s` (at most
    `limit` of each kind): that one rang, and where one waits. A watch that subscribes meanwhile
    claims them (counted `early`); rings nobody claims are counted `unmatched` when they expire
    (foreign contacts: another worker's, or another application's on the same instance)."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        ttl_s: float = 30.0,
        limit: int = 10_000,
        clock: Clock | None = None,
    ) -> None:
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self._rings: Expiring[bool] = Expiring(ttl_s, limit)
        self._places: Expiring[Place] = Expiring(ttl_s, limit)

    def __len__(self) -> int:
        """How many rings are kept."""
        return len(self._rings)

    def rang(self, contact_id: str) -> None:
        self._rings.add(contact_id, self._expire(), True)

    def placed(self, contact_id: str, place: Place) -> None:
        self._places.add(contact_id, self._expire(), place)

    def claim(self, contact_id: str) -> tuple[bool, Place | None]:
        """Whether a contact event rang for `contact_id` before its watch, and where it waits
        (None: unknown); both forgotten."""
        now = self._expire()
        place = self._places.pop(contact_id, now)
        rang = self._rings.pop(contact_id, now) is not None
        if rang:
            self._count("early")
        return rang, place

    def _expire(self) -> float:
        now = self._clock.monotonic()
        for _ in self._rings.expire(now):
            self._count("unmatched")
        self._places.expire(now)
        return now

    def _count(self, outcome: str) -> None:
        self._metrics.contact_event_outcomes.labels(outcome).inc()


class Doorbell:
    """A watch's doorbell: `event` is set when someone rings; `by_event` says whether a contact
    event rang it since the last `rearm`."""

    def __init__(self) -> None:
        self.event = Bell()
        self.by_event = False
        #: The priority of the poll in flight, and what a contact event lowers it to.
        self._lift: tuple[Priority, float] | None = None

    def ring(self, *, by_event: bool = False) -> None:
        if by_event:
            self.by_event = True
            if self._lift is not None:
                priority, to = self._lift
                priority.lower(to)
        self.event.set()

    def rearm(self) -> None:
        if self.event.is_set():
            self.event = Bell()
        self.by_event = False

    def lifting(self, priority: Priority, to: float) -> _Lifting:
        """While the block runs (a poll waiting for its token, say), a contact event that rings
        lowers `priority` to `to`: the poll becomes the confirmation, served before the other
        scheduled polls."""
        return _Lifting(self, priority, to)


# The blocks below are classes, not generator-based context managers (docs/design.md, "What a
# watched contact holds").


class _Lifting:
    __slots__ = ("_doorbell", "_priority", "_to")

    def __init__(self, doorbell: Doorbell, priority: Priority, to: float) -> None:
        self._doorbell, self._priority, self._to = doorbell, priority, to

    def __enter__(self) -> Priority:
        self._doorbell._lift = (self._priority, self._to)
        return self._priority

    def __exit__(self, *exc: object) -> None:
        self._doorbell._lift = None


class Holding(Generic[V]):
    """`item` among the holders of `key` while the block runs; `key` is dropped (and `emptied`
    told) when its last holder leaves."""

    __slots__ = ("_emptied", "_holders", "_item", "_key")

    def __init__(
        self,
        holders: dict[str, list[V]],
        key: str,
        item: V,
        *,
        emptied: Callable[[str], None] | None = None,
    ) -> None:
        self._holders, self._key, self._item, self._emptied = holders, key, item, emptied

    def __enter__(self) -> V:
        self._holders.setdefault(self._key, []).append(self._item)
        return self._item

    def __exit__(self, *exc: object) -> None:
        remaining = self._holders[self._key]
        remaining.remove(self._item)
        if not remaining:
            del self._holders[self._key]
            if self._emptied is not None:
                self._emptied(self._key)


class ContactNotifier:
    """The watches of one engine: wakes them on outside notifications (e.g. Connect contact
    events) and keeps where their contacts wait (`frontier`). With `early`, what contact events
    say of a contact before its watch subscribes is kept for that watch."""

    def __init__(self, *, early: EarlyEvents | None = None) -> None:
        self._doorbells: dict[str, list[Doorbell]] = {}
        self.frontier = QueueFrontier()
        self._early = early

    def subscribe(self, contact_id: str) -> Holding[Doorbell]:
        """The contact's doorbell, rung while the block runs (with what contact events said of
        the contact before, if this notifier keeps early events)."""
        doorbell = Doorbell()
        if self._early is not None:
            rang, place = self._early.claim(contact_id)
            if place is not None:
                self.frontier.waiting(contact_id, *place)
            if rang:
                doorbell.ring(by_event=True)
        return Holding(self._doorbells, contact_id, doorbell, emptied=self.frontier.forget)

    def ring(self, contact_id: str, *, by_event: bool = False) -> bool:
        """Wake every watch of `contact_id` (`by_event`: a contact event says something happened
        to it); False if nobody watches it here (a contact event's ring is then kept for a
        watch that subscribes soon, if this notifier keeps early events)."""
        doorbells = self._doorbells.get(contact_id)
        if not doorbells:
            if by_event and self._early is not None:
                self._early.rang(contact_id)
            return False
        for doorbell in doorbells:
            doorbell.ring(by_event=by_event)
        return True

    def place(self, contact_id: str, queue_id: str, enqueued_at: float) -> None:
        """`contact_id` waits in `queue_id` since `enqueued_at` (a QUEUED event): the frontier
        learns it before any poll, so a younger contact's connection can wake it; or, before its
        watch subscribes, when it does."""
        if contact_id in self._doorbells:
            self.frontier.waiting(contact_id, queue_id, enqueued_at)
        elif self._early is not None:
            self._early.placed(contact_id, (queue_id, enqueued_at))

    def standing(self, contact_id: str, head_contacts: int) -> Standing:
        """Where `contact_id` stands among the watches here (`head_contacts`: how many of the
        oldest waiting contacts of each queue poll as heads; 0: none)."""
        frontier = self.frontier
        head = head_contacts > 0 and frontier.is_head(contact_id, head_contacts)
        return Standing(
            watched=len(self._doorbells),
            fifo=frontier.in_fifo_queue(contact_id),
            head=head,
            heads=frontier.head_total(head_contacts) if head_contacts else 0,
        )

    def polled(self, poll: Poll, *, head_contacts: int, wake_limit: int) -> bool:
        """A watch polled: the frontier learns from it (`QueueFrontier.after_poll`) and the
        contacts it says are due are woken. True if the poll judged a "passed" inference."""
        judged, due = self.frontier.after_poll(
            poll, head_contacts=head_contacts, wake_limit=wake_limit
        )
        for contact_id in due:
            self.ring(contact_id)
        return judged

    def __len__(self) -> int:
        return len(self._doorbells)
