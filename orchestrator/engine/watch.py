"""Watching a contact until an agent connects, the customer leaves, or the deadline passes.

Polling is DescribeContact, each poll paid from the shared rate budget. The deadline counts from
the contact's own `InitiationTimestamp`, so a redelivered request does not restart the clock, and
outcomes are decided from Connect's timestamps against that deadline, so every attempt at the
same request reaches the same verdict.

The watch is a loop of one sleep and one recheck: the pause before the next poll is a pure
function of the policy and what is known (`pause.py`: backoff with jitter, the safety net's
budget floor with contact events on, queue-aware head polls); the watch sleeps it, or until its
doorbell rings (`doorbells.py`: a contact event, or a connection in its queue), and polls, or
works the pause out again when the pause says so. A poll woken by a contact event goes at top
priority (the budget goes to confirmations first), and so does one already waiting for its token
when the event comes. Polling stays the fallback: a lost notification costs at most one pause.

Each poll teaches the queue frontier (`frontier.py`) where the contact waits; a contact seen
connected wakes those enqueued before it (`wake_passed`, implied by `queue_aware`), which turns a
lost CONNECTED_TO_AGENT event into a delay of one connection.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from orchestrator.clock import Clock
from orchestrator.connect.gateway import ConnectGateway, ContactSnapshot
from orchestrator.engine.doorbells import ContactNotifier
from orchestrator.engine.frontier import Poll
from orchestrator.engine.pause import jitter_draw, watch_pause
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


class WatchOutcome(StrEnum):
    """How a watch ends, by Connect's timestamps against the deadline (`verdict`)."""

    #: An agent took the contact in time.
    AGENT_CONNECTED = "agent_connected"
    #: The customer left before an agent came, in time.
    DISCONNECTED = "disconnected"
    #: Neither happened in time (or it happened after the deadline).
    TIMED_OUT = "timed_out"


def verdict(snapshot: ContactSnapshot, deadline: float) -> WatchOutcome | None:
    """The outcome Connect's own timestamps imply, or None while the contact still waits."""
    connected = snapshot.agent_connected_at
    if connected is not None:
        return WatchOutcome.AGENT_CONNECTED if connected <= deadline else WatchOutcome.TIMED_OUT
    gone = snapshot.disconnected_at
    if gone is not None:
        return WatchOutcome.DISCONNECTED if gone <= deadline else WatchOutcome.TIMED_OUT
    return None


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
    # `is None`, not `or`: an empty notifier has len() 0, so it is falsy.
    watches = notifier if notifier is not None else ContactNotifier()
    head_contacts = policy.head_contacts if policy.queue_aware else 0
    deadline = clock.time() + policy.max_wait_s  # until Connect tells us InitiationTimestamp
    priority = clock.time()  # older contacts first when the budget is scarce
    polls, draw, began = 0, jitter_draw(policy, rng), clock.time()
    with watches.subscribe(contact_id) as doorbell:
        while True:
            now = clock.time()
            pause = watch_pause(
                policy,
                watches.standing(contact_id, head_contacts),
                step=polls,
                draw=draw,
                elapsed_s=now - began,
                left_s=deadline - now,
            )
            await clock.sleep(pause.sleep_s, doorbell.event)
            if pause.recheck and not doorbell.event.is_set():
                continue
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
            took_agent = outcome is WatchOutcome.AGENT_CONNECTED
            poll = Poll(snapshot, asked_at, served=outcome is not None, took_agent=took_agent)
            judged = policy.infers_passed and watches.polled(
                poll, head_contacts=head_contacts, wake_limit=max(1, policy.head_contacts)
            )
            if judged and metrics is not None:
                metrics.passed_wakes.labels("served" if poll.served else "waiting").inc()
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
            draw, began = jitter_draw(policy, rng), clock.time()
