"""Watching a contact until an agent connects, the customer leaves, or the deadline passes.

Polling is DescribeContact with exponential backoff and jitter, each poll paid from the shared
rate budget. The deadline counts from the contact's own `InitiationTimestamp`, so a redelivered
request does not restart the clock, and outcomes are decided from Connect's timestamps against
that deadline, so every attempt at the same request reaches the same verdict.

One vocabulary for waking watches: each watch has a `Doorbell`; `ContactNotifier.ring(contact_id)`
rings the doorbells of a contact (Connect contact events, queue-aware polling); a rung watch polls
at once and `rearm`s its doorbell, and a watch woken by a contact event polls at top priority
(the budget goes to confirmations first). Polling stays the fallback: a lost notification costs at
most one backoff interval. Queue-aware polling (`frontier.py`) uses the same doorbells: the contacts
next in line for an agent poll often, and a detected connection wakes the ones it implies. The
heads are paid from a bounded share of the DescribeContact budget, scaled to the number of watched
contacts (`WatchPolicy.head_interval`).

With contact events on there are no head polls, but the inference stays (`wake_passed`): QUEUED
events tell the frontier where each contact waits, so the confirmed connection of a younger
contact wakes an older one whose CONNECTED_TO_AGENT event was lost. The scheduled polls (the
safety net) share a small part of the budget (`scheduled_floor`), smaller for contacts of a queue
that serves oldest first, since the inference covers them; the floor is worked out again while
a poll waits on it, so it shrinks as watched contacts leave.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

import anyio

from orchestrator.bounds import check_bounds, described
from orchestrator.clock import Clock
from orchestrator.connect.gateway import ConnectGateway, ContactSnapshot
from orchestrator.engine.frontier import QueueFrontier
from orchestrator.metrics import Metrics


@dataclass(frozen=True)
class WatchPolicy:
    """When to poll. Defaults suit real Connect; the settings reference explains them."""

    first_delay_s: float = field(
        default=2.0,
        metadata=described("Seconds from the start of a contact to its first poll.", gt=0),
    )
    multiplier: float = field(
        default=1.5,
        metadata=described("Each pause between polls is the previous one times this.", ge=1),
    )
    max_interval_s: float = field(
        default=10.0,
        metadata=described(
            "Longest pause between two polls of a contact (at least first_delay_s).", gt=0
        ),
    )
    max_wait_s: float = field(
        default=900.0,
        metadata=described(
            "The watch gives up (contact.timed_out) this many seconds after the contact's "
            "InitiationTimestamp.",
            gt=0,
        ),
    )
    jitter: float = field(
        default=0.25,
        metadata=described(
            "Each pause d is drawn from [(1 - jitter) * d, d], so polls of many contacts spread "
            "out and no pause ever exceeds the schedule.",
            ge=0,
            lt=1,
        ),
    )
    queue_aware: bool = field(
        default=True,
        metadata=described(
            "Queue-aware polling: Connect queues serve the oldest waiting contact first, so the "
            "head_contacts oldest waiting contacts of each queue poll every head_interval_s, and "
            "a contact seen connected wakes the contacts enqueued before it. Backoff polling "
            "stays the fallback."
        ),
    )
    head_contacts: int = field(
        default=2,
        metadata=described(
            "With queue-aware polling, how many of the oldest waiting contacts of each queue "
            "poll as heads.",
            ge=0,
            le=100,
        ),
    )
    head_interval_s: float = field(
        default=1.0,
        metadata=described("A head polls at most this often (seconds).", gt=0),
    )
    describe_rate: float | None = field(
        default=None,
        metadata=described(
            "The DescribeContact rate this watch may spend (the worker's budget, requests per "
            "second; None: unknown, heads poll every head_interval_s).",
            gt=0,
        ),
    )
    head_budget_share: float = field(
        default=0.25,
        metadata=described(
            "All heads together poll within this share of the DescribeContact budget: each "
            "head polls at most every max(head_interval_s, heads / (head_budget_share * "
            "describe rate)) seconds.",
            gt=0,
            le=1,
        ),
    )
    head_boost: float = field(
        default=4.0,
        metadata=described(
            "A head polls at most this many times as often as each watched contact could if "
            "the describe rate were shared evenly among them: every watched / (head_boost * "
            "rate) seconds.",
            ge=1,
        ),
    )
    #: Priority of a poll woken by a contact event (lower is served first; other polls use the
    #: contact's enqueue or initiation time, epoch seconds).
    confirm_priority: float = 0.0
    poll_budget_share: float | None = field(
        default=None,
        metadata=described(
            "With contact events on, the share of the DescribeContact budget that scheduled "
            "polls (the safety net) of all watched contacts together may use: each pauses at "
            "least watched / (poll_budget_share * describe rate) seconds, so confirmations of "
            "events keep the rest. None: no such floor (polling only).",
            gt=0,
            le=1,
        ),
    )
    fifo_poll_budget_share: float | None = field(
        default=None,
        metadata=described(
            "The same share for contacts known to wait in a queue that serves oldest first, "
            "where a lost event is caught by the next connection in the queue (wake_passed). "
            "None: poll_budget_share for every contact.",
            gt=0,
            le=1,
        ),
    )
    wake_passed: bool = field(
        default=False,
        metadata=described(
            "A contact seen connected wakes the watched contacts enqueued before it in its "
            "queue (the inference of queue-aware polling, without its head polls): where agents "
            "take the oldest contact first, a lost CONNECTED_TO_AGENT event is then caught at "
            "the next connection. queue_aware implies it."
        ),
    )
    floor_recheck_s: float = field(
        default=5.0,
        metadata=described(
            "While a scheduled poll waits on the budget floor, the floor is worked out again "
            "this often: it shrinks as watched contacts leave, and the wait with it.",
            gt=0,
        ),
    )

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.max_interval_s < self.first_delay_s:
            raise ValueError("max_interval_s must be >= first_delay_s")

    @property
    def infers_passed(self) -> bool:
        """Whether a detected connection wakes the contacts enqueued before it."""
        return self.queue_aware or self.wake_passed

    def scheduled_floor(self, watched: int, *, fifo: bool = False) -> float:
        """The shortest pause of a scheduled poll while `watched` contacts are watched (`fifo`:
        of a contact known to wait in a queue that serves oldest first)."""
        share = self.poll_budget_share
        if fifo and self.fifo_poll_budget_share is not None:
            share = self.fifo_poll_budget_share
        if share is None or self.describe_rate is None:
            return 0.0
        return watched / (share * self.describe_rate)

    def head_interval(self, heads_total: int, watched: int = 0) -> float:
        """How often each head polls when `heads_total` contacts poll as heads among `watched`
        watched contacts: never more often than `head_interval_s`, all heads together within
        their share of the budget, and each at most `head_boost` times as often as the average
        watched contact could at the budget's rate."""
        if self.describe_rate is None:
            return self.head_interval_s
        return max(
            self.head_interval_s,
            heads_total / (self.head_budget_share * self.describe_rate),
            watched / (self.head_boost * self.describe_rate),
        )

    def delays(self, rng: random.Random) -> Iterator[float]:
        """The pause before each poll: first_delay, then times multiplier, capped."""
        delay = self.first_delay_s
        while True:
            yield delay * rng.uniform(1.0 - self.jitter, 1.0)
            delay = min(self.max_interval_s, delay * self.multiplier)


class WatchOutcome(StrEnum):
    AGENT_CONNECTED = "agent_connected"
    DISCONNECTED = "disconnected"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class WatchResult:
    outcome: WatchOutcome
    snapshot: ContactSnapshot
    polls: int
    #: Epoch seconds: the deadline used, and when the outcome was observed.
    deadline: float
    observed_at: float
    #: Monotonic time of the observation, for consistency windows.
    observed_mono: float
    #: How the outcome was noticed: "event" when a contact event woke the deciding poll, else
    #: "poll" (the schedule, or queue-aware polling).
    noticed_via: str = "poll"


def verdict(snapshot: ContactSnapshot, deadline: float) -> WatchOutcome | None:
    """The outcome Connect's own timestamps imply, or None while the contact still waits."""
    connected = snapshot.agent_connected_at
    if connected is not None:
        return WatchOutcome.AGENT_CONNECTED if connected <= deadline else WatchOutcome.TIMED_OUT
    gone = snapshot.disconnected_at
    if gone is not None:
        return WatchOutcome.DISCONNECTED if gone <= deadline else WatchOutcome.TIMED_OUT
    return None


class Doorbell:
    """A watch's doorbell: `event` is set when someone rings; `urgent` when a contact event rang
    it since the last `rearm`."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.urgent = anyio.Event()

    @property
    def by_event(self) -> bool:
        """Whether a contact event rang since the last `rearm`."""
        return self.urgent.is_set()

    def ring(self, *, by_event: bool = False) -> None:
        if by_event:
            self.urgent.set()
        self.event.set()

    def rearm(self) -> None:
        if self.event.is_set():
            self.event = anyio.Event()
        if self.urgent.is_set():
            self.urgent = anyio.Event()


class ContactNotifier:
    """The watches of one engine: wakes them on outside notifications (e.g. Connect contact
    events) and keeps the queue frontier that queue-aware polling reads."""

    def __init__(self) -> None:
        self._doorbells: dict[str, list[Doorbell]] = {}
        self.frontier = QueueFrontier()
        #: Asked when a watch subscribes: did a contact event for this contact arrive before
        #: anyone watched it? (Set by `LocalContactEvents`.) If so, the watch polls at once.
        self.early_events: Callable[[str], bool] | None = None

    @contextmanager
    def subscribe(self, contact_id: str) -> Iterator[Doorbell]:
        doorbell = Doorbell()
        if self.early_events is not None and self.early_events(contact_id):
            doorbell.ring(by_event=True)
        self._doorbells.setdefault(contact_id, []).append(doorbell)
        try:
            yield doorbell
        finally:
            remaining = self._doorbells[contact_id]
            remaining.remove(doorbell)
            if not remaining:
                del self._doorbells[contact_id]
                self.frontier.forget(contact_id)

    def watches(self, contact_id: str) -> bool:
        """Whether a watch of `contact_id` runs here."""
        return contact_id in self._doorbells

    def ring(self, contact_id: str, *, by_event: bool = False) -> bool:
        """Wake every watch of `contact_id` (`by_event`: a contact event says something happened
        to it); False if nobody watches it here."""
        doorbells = self._doorbells.get(contact_id)
        if not doorbells:
            return False
        for doorbell in doorbells:
            doorbell.ring(by_event=by_event)
        return True

    def __len__(self) -> int:
        return len(self._doorbells)


def _track(
    notifier: ContactNotifier,
    snapshot: ContactSnapshot,
    outcome: WatchOutcome | None,
    policy: WatchPolicy,
    *,
    asked_at: float,
    metrics: Metrics | None,
) -> None:
    """Keep the queue frontier up to date after a poll (asked at `asked_at`, epoch seconds), and
    wake the contacts it says are due: the new heads (queue-aware polling) and the contacts a
    connection passed over."""
    head_contacts = policy.head_contacts if policy.queue_aware else 0
    frontier = notifier.frontier
    contact_id = snapshot.contact_id
    judged = frontier.judge(contact_id, served=outcome is not None)
    if judged and metrics is not None:
        metrics.passed_wakes.labels("waiting" if outcome is None else "served").inc()
    queue_id, enqueued_at = snapshot.queue_id, snapshot.enqueued_at
    if queue_id is None or enqueued_at is None:
        return
    if outcome is None:
        frontier.waiting(contact_id, queue_id, enqueued_at)
        if head_contacts and frontier.is_head(contact_id, head_contacts):
            frontier.still_waiting(contact_id, asked_at, strike=not judged)
        return
    if snapshot.agent_connected_at is not None:
        frontier.connected(queue_id, enqueued_at, snapshot.agent_connected_at)
    place = frontier.position(contact_id)
    frontier.forget(contact_id)
    due: list[str] = []
    if place is not None and place < head_contacts and frontier.fifo(queue_id):
        # A head left: the line moved, and the new heads are the next to be served.
        due += frontier.heads(queue_id, head_contacts)
    if outcome is WatchOutcome.AGENT_CONNECTED:
        # FIFO: an agent took this contact, so those enqueued before it have been served too.
        # Wake a few, oldest first (each one found connected wakes the next in turn); the
        # frontier stops inferring for a queue where this keeps being wrong.
        due += frontier.passed(queue_id, enqueued_at, max(1, policy.head_contacts))
    for woken in dict.fromkeys(due):
        notifier.ring(woken)


async def watch_contact(
    gateway: ConnectGateway,
    *,
    instance_id: str,
    contact_id: str,
    policy: WatchPolicy,
    clock: Clock,
    started_mono: float,
    notifier: ContactNotifier | None = None,
    rng: random.Random | None = None,
    metrics: Metrics | None = None,
) -> WatchResult:
    """Poll until the contact reaches an outcome. Connect errors propagate (after retries)."""
    rng = rng or random.Random()
    delays = policy.delays(rng)
    deadline = clock.time() + policy.max_wait_s  # until Connect tells us InitiationTimestamp
    priority = clock.time()  # older contacts first when the budget is scarce
    polls = 0
    # `is None`, not `or`: an empty notifier has len() 0, so it is falsy.
    doorbells = notifier if notifier is not None else ContactNotifier()
    frontier = doorbells.frontier
    with doorbells.subscribe(contact_id) as doorbell:
        while True:
            backoff = next(delays)
            began = clock.time()
            draw: float | None = None
            while True:
                # The budget floor shrinks as watched contacts leave: while it holds this poll
                # back, wake now and then to work it out again.
                pause = backoff
                floor = policy.scheduled_floor(
                    len(doorbells), fifo=frontier.in_fifo_queue(contact_id)
                )
                if floor > pause:
                    draw = draw or rng.uniform(1.0 - policy.jitter, 1.0)
                    pause = floor * draw
                if policy.queue_aware and frontier.is_head(contact_id, policy.head_contacts):
                    heads = frontier.head_total(policy.head_contacts)
                    pause = min(pause, policy.head_interval(heads, len(doorbells)))
                remaining = max(0.0, min(began + pause, deadline) - clock.time())
                if floor <= backoff or remaining <= policy.floor_recheck_s:
                    await clock.sleep(remaining, doorbell.event)
                    break
                await clock.sleep(policy.floor_recheck_s, doorbell.event)
                if doorbell.event.is_set():
                    break
            by_event = doorbell.by_event
            doorbell.rearm()
            asked_at = clock.time()
            snapshot = await gateway.describe_contact(
                instance_id,
                contact_id,
                fresh_since=started_mono,
                priority=policy.confirm_priority if by_event else priority,
                # An event while this poll waits for its token makes it the confirmation.
                hurry=None if by_event else doorbell.urgent,
                hurry_priority=policy.confirm_priority,
            )
            by_event = by_event or doorbell.by_event
            polls += 1
            if snapshot.initiated_at is not None:
                deadline = snapshot.initiated_at + policy.max_wait_s
            priority = snapshot.enqueued_at or snapshot.initiated_at or priority
            now = clock.time()
            outcome = verdict(snapshot, deadline)
            if outcome is None and now >= deadline:
                outcome = WatchOutcome.TIMED_OUT
            if policy.infers_passed:
                _track(doorbells, snapshot, outcome, policy, asked_at=asked_at, metrics=metrics)
            if outcome is not None:
                return WatchResult(
                    outcome,
                    snapshot,
                    polls,
                    deadline,
                    now,
                    clock.monotonic(),
                    noticed_via="event" if by_event else "poll",
                )
