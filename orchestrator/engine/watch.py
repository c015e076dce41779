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
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from orchestrator.bounds import Bounded, declared
from orchestrator.clock import Clock
from orchestrator.connect.gateway import ConnectGateway, ContactSnapshot
from orchestrator.engine.doorbells import ContactNotifier
from orchestrator.engine.frontier import Poll
from orchestrator.engine.pause import jitter_draw, watch_pause
from orchestrator.metrics import Metrics
from orchestrator.waiters import Priority


@dataclass(frozen=True)
class WatchPolicy(Bounded):
    """When to poll. Defaults suit real Connect: docs/design.md ("The watch") says why."""

    first_delay_s: float = declared(
        2.0, "Seconds from the start of a contact to its first poll.", gt=0
    )
    multiplier: float = declared(
        1.5, "Each pause between polls is the previous one times this.", ge=1
    )
    max_interval_s: float = declared(
        10.0, "Longest pause between two polls of a contact (at least first_delay_s).", gt=0
    )
    max_wait_s: float = declared(
        900.0,
        "The watch gives up (contact.timed_out) this many seconds after the contact's "
        "InitiationTimestamp.",
        gt=0,
    )
    jitter: float = declared(
        0.25,
        "Each pause d is drawn from [(1 - jitter) * d, d], so polls of many contacts spread "
        "out and no pause ever exceeds the schedule.",
        ge=0,
        lt=1,
    )
    queue_aware: bool = declared(
        True,
        "Queue-aware polling: Connect queues serve the oldest waiting contact first, so the "
        "head_contacts oldest waiting contacts of each queue poll every head_interval_s, and "
        "a contact seen connected wakes the contacts enqueued before it. Backoff polling "
        "stays the fallback.",
    )
    head_contacts: int = declared(
        2,
        "With queue-aware polling, how many of the oldest waiting contacts of each queue "
        "poll as heads.",
        ge=0,
        le=100,
    )
    head_interval_s: float = declared(1.0, "A head polls at most this often (seconds).", gt=0)
    describe_rate: float | None = declared(
        None,
        "The DescribeContact rate this watch may spend (the worker's budget, requests per "
        "second; None: unknown, heads poll every head_interval_s).",
        gt=0,
    )
    head_budget_share: float = declared(
        0.25,
        "All heads together poll within this share of the DescribeContact budget: each "
        "head polls at most every max(head_interval_s, heads / (head_budget_share * "
        "describe rate)) seconds.",
        gt=0,
        le=1,
    )
    head_boost: float = declared(
        4.0,
        "A head polls at most this many times as often as each watched contact could if "
        "the describe rate were shared evenly among them: every watched / (head_boost * "
        "rate) seconds.",
        ge=1,
    )
    fill_budget_share: float = declared(
        1.0,
        "Polling only: where the backoff would leave the DescribeContact budget idle, the "
        "scheduled polls of all watched contacts together spend this share of it (of what "
        "the heads leave): each contact's pause is capped at max(min_interval_s, watched / "
        "(share * describe rate)), so that the fewer contacts wait, the more often each is "
        "polled. 0: backoff only. With contact events on, poll_budget_share applies instead.",
        ge=0,
        le=1,
    )
    min_interval_s: float = declared(
        1.0, "The budget fill never brings a contact's pause below this (seconds).", gt=0
    )
    #: Priority of a poll woken by a contact event (lower is served first; other polls use the
    #: contact's enqueue or initiation time, epoch seconds).
    confirm_priority: float = 0.0
    poll_budget_share: float | None = declared(
        None,
        "With contact events on, the share of the DescribeContact budget that scheduled "
        "polls (the safety net) of all watched contacts together may use: each pauses at "
        "least watched / (poll_budget_share * describe rate) seconds, so confirmations of "
        "events keep the rest. None: no such floor (polling only).",
        gt=0,
        le=1,
    )
    fifo_poll_budget_share: float | None = declared(
        None,
        "The same share for contacts known to wait in a queue that serves oldest first, "
        "where a lost event is caught by the next connection in the queue (wake_passed). "
        "None: poll_budget_share for every contact.",
        gt=0,
        le=1,
    )
    wake_passed: bool = declared(
        False,
        "A contact seen connected wakes the watched contacts enqueued before it in its "
        "queue (the inference of queue-aware polling, without its head polls): where agents "
        "take the oldest contact first, a lost CONNECTED_TO_AGENT event is then caught at "
        "the next connection. queue_aware implies it.",
    )
    on_timeout: Literal["stop", "leave"] = declared(
        "stop",
        'What becomes of a contact still waiting at max_wait_s: "stop" ends it with '
        "StopContact (unless an agent has it by then), so no agent answers a customer who "
        'was told the call timed out; "leave" leaves it queued in Connect, for flows that '
        "end such contacts themselves. Failures after the start, a last receive given up "
        "and cancels always stop the contact.",
    )
    floor_recheck_s: float = declared(
        5.0,
        "While a scheduled poll waits on the budget floor, the floor is worked out again "
        "this often: it shrinks as watched contacts leave, and the wait with it.",
        gt=0,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_interval_s < self.first_delay_s:
            raise ValueError("max_interval_s must be >= first_delay_s")

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
    #: The request was cancelled while its contact waited (the snapshot is the last poll's).
    CANCELLED = "cancelled"


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
    cancelled: Callable[[], bool] | None = None,
) -> WatchResult:
    """Poll until the contact reaches an outcome, or `cancelled()` says so (whoever cancels
    rings the contact's doorbell, which ends the pause). Connect errors propagate (after
    retries)."""
    rng = rng or random.Random()
    # `is None`, not `or`: an empty notifier has len() 0, so it is falsy.
    watches = notifier if notifier is not None else ContactNotifier()
    head_contacts = policy.head_contacts if policy.queue_aware else 0
    deadline = clock.time() + policy.max_wait_s  # until Connect tells us InitiationTimestamp
    priority = clock.time()  # older contacts first when the budget is scarce
    polls, draw, began = 0, jitter_draw(policy, rng), clock.time()
    snapshot = ContactSnapshot(contact_id)
    with watches.subscribe(contact_id) as doorbell:
        while True:
            if cancelled is not None and cancelled():
                now, mono = clock.time(), clock.monotonic()
                return WatchResult(WatchOutcome.CANCELLED, snapshot, polls, deadline, now, mono)
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
            if cancelled is not None and cancelled():
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
