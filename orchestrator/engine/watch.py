"""Watching a contact until an agent connects, the customer leaves, or the deadline passes.

Polling is DescribeContact with exponential backoff and jitter, each poll paid from the shared
rate budget. The deadline counts from the contact's own `InitiationTimestamp`, so a redelivered
request does not restart the clock, and outcomes are decided from Connect's timestamps against
that deadline, so every attempt at the same request reaches the same verdict.

A watch is woken before its pause ends by its doorbell (`doorbells.py`): a contact event, or
queue-aware polling. Queue-aware polling (`frontier.py`): the contacts next in line for an agent
poll often, and a detected connection wakes the ones it implies. The heads are paid from a bounded
share of the DescribeContact budget, scaled to the number of watched contacts
(`WatchPolicy.head_interval`).

With contact events on there are no head polls, but the inference stays (`wake_passed`): QUEUED
events tell the frontier where each contact waits, so the confirmed connection of a younger
contact wakes an older one whose CONNECTED_TO_AGENT event was lost. The scheduled polls (the
safety net) share a small part of the budget (`scheduled_floor`), smaller for contacts of a queue
that serves oldest first, since the inference covers them; the floor is worked out again while
a poll waits on it, so it shrinks as watched contacts leave.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from orchestrator.clock import Clock
from orchestrator.connect.gateway import ConnectGateway, ContactSnapshot
from orchestrator.engine.doorbells import ContactNotifier
from orchestrator.metrics import Metrics
from orchestrator.waiters import Priority


@dataclass(frozen=True)
class WatchPolicy:
    """When to poll. Defaults suit real Connect; the README explains them."""

    first_delay_s: float = 2.0
    multiplier: float = 1.5
    max_interval_s: float = 10.0
    max_wait_s: float = 900.0
    #: Each delay is drawn from [(1 - jitter) * d, d], so polls of many contacts spread out
    #: and no delay ever exceeds the schedule.
    jitter: float = 0.25
    #: Queue-aware polling (see `frontier.py`): the `head_contacts` oldest waiting contacts of
    #: each queue poll every `head_interval_s`; a contact seen connected wakes those enqueued
    #: before it and the new heads.
    queue_aware: bool = True
    head_contacts: int = 2
    head_interval_s: float = 1.0
    #: The DescribeContact rate this watch may spend (the worker's budget, requests per second;
    #: None: unknown, heads poll every `head_interval_s`), and the share of it all heads together
    #: may use: heads poll at most every `head_contacts_total / (head_budget_share * rate)` s.
    describe_rate: float | None = None
    head_budget_share: float = 0.25
    #: And a head polls at most this many times as often as each watched contact could if
    #: `describe_rate` were shared evenly among them: every `watched / (head_boost * rate)` s.
    head_boost: float = 4.0
    #: Priority of a poll woken by a contact event (lower is served first; other polls use the
    #: contact's enqueue or initiation time, epoch seconds).
    confirm_priority: float = 0.0
    #: With contact events on, the share of `describe_rate` that scheduled polls (the safety
    #: net) of all watched contacts together may use: each pauses at least
    #: `watched / (poll_budget_share * describe_rate)` s, so confirmations keep the rest of the
    #: budget. None: no such floor (polling only).
    poll_budget_share: float | None = None
    #: The same for contacts known to wait in a queue that serves oldest first, where a lost
    #: event is caught by the next connection in the queue (`wake_passed`), so the safety net
    #: matters less. None: `poll_budget_share` for every contact.
    fifo_poll_budget_share: float | None = None
    #: A contact seen connected wakes the watched contacts enqueued before it (the inference of
    #: queue-aware polling, without its head polls): on with contact events, where it turns a
    #: lost CONNECTED_TO_AGENT event into a delay of one connection. `queue_aware` implies it.
    wake_passed: bool = False
    #: While a scheduled poll waits on the budget floor, the floor is worked out again this
    #: often: it shrinks as watched contacts leave, and the wait with it.
    floor_recheck_s: float = 5.0

    def __post_init__(self) -> None:
        if self.first_delay_s <= 0 or self.max_interval_s < self.first_delay_s:
            raise ValueError("need 0 < first_delay_s <= max_interval_s")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if self.max_wait_s <= 0:
            raise ValueError("max_wait_s must be > 0")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.head_contacts < 0 or self.head_interval_s <= 0:
            raise ValueError("need head_contacts >= 0 and head_interval_s > 0")
        if self.describe_rate is not None and self.describe_rate <= 0:
            raise ValueError("describe_rate must be > 0")
        if not 0 < self.head_budget_share <= 1:
            raise ValueError("head_budget_share must be in (0, 1]")
        if self.head_boost < 1:
            raise ValueError("head_boost must be >= 1")
        for share in (self.poll_budget_share, self.fifo_poll_budget_share):
            if share is not None and not 0 < share <= 1:
                raise ValueError("poll_budget_share and fifo_poll_budget_share must be in (0, 1]")
        if self.floor_recheck_s <= 0:
            raise ValueError("floor_recheck_s must be > 0")

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
            ticket = Priority(policy.confirm_priority if by_event else priority)
            # An event while this poll waits for its token makes it the confirmation.
            with doorbell.lifting(ticket, policy.confirm_priority):
                snapshot = await gateway.describe_contact(
                    instance_id, contact_id, fresh_since=started_mono, priority=ticket
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
