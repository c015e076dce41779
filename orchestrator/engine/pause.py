"""The watch's pause: how long a watched contact waits before its next DescribeContact.

`watch_pause` is a pure function of the policy and of what is known when it is asked: where the
contact stands among the watches (`Standing`), how many polls it has had (the backoff step), the
jitter drawn for this pause, the time elapsed since the pause began and the time left before the
deadline. The watch (`watch.py`) sleeps what it says (a doorbell ends the sleep early) and then
polls, or works the pause out again. Three policies make the pause:

* the backoff: `first_delay_s`, times `multiplier` after each poll, capped at `max_interval_s`,
  each pause drawn from [(1 - jitter) * d, d] so that polls of many contacts spread out and no
  pause exceeds the schedule;
* the safety-net floor, with contact events on: the scheduled polls of all watched contacts
  together stay within `poll_budget_share` of the DescribeContact rate (`fifo_poll_budget_share`
  for contacts known to wait in a queue that serves oldest first, since a lost event is caught at
  the next connection there). While the floor holds a poll back the pause is worked out again
  every `floor_recheck_s`: the floor shrinks as watched contacts leave, and the pause with it;
* the budget fill, polling only: where the backoff would leave the DescribeContact budget idle,
  its ceiling comes down (`fill_ceiling`, never below `min_interval_s`) so that the scheduled polls
  of all watched contacts together spend `fill_budget_share` of what the heads leave;
* queue-aware polling: the oldest waiting contacts of each queue (the heads) poll at most every
  `head_interval`, within their share of the budget.

No pause runs past the deadline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.engine.watch import WatchPolicy


@dataclass(frozen=True)
class Standing:
    """Where a watched contact stands among the watches of its engine."""

    #: How many contacts are watched, this one included.
    watched: int = 1
    #: Known to wait in a queue treated as serving its oldest contact first.
    fifo: bool = False
    #: Among the `head_contacts` oldest waiting contacts of such a queue.
    head: bool = False
    #: How many contacts poll as heads now, over every queue (whether or not this one is).
    heads: int = 0


@dataclass(frozen=True)
class Pause:
    """Sleep `sleep_s` (unless the doorbell rings); then poll, or, with `recheck`, work the pause
    out again."""

    sleep_s: float
    recheck: bool = False


def backoff_s(policy: WatchPolicy, step: int) -> float:
    """The schedule's pause after `step` polls, before jitter: `first_delay_s`, times
    `multiplier` after each poll, capped at `max_interval_s`."""
    delay = policy.first_delay_s
    for _ in range(step):
        if delay >= policy.max_interval_s or policy.multiplier == 1:
            break
        delay *= policy.multiplier
    return min(policy.max_interval_s, delay)


def jitter_draw(policy: WatchPolicy, rng: random.Random) -> float:
    """The factor of one pause, from [1 - jitter, 1]."""
    return rng.uniform(1.0 - policy.jitter, 1.0)


def scheduled_floor(policy: WatchPolicy, watched: int, *, fifo: bool = False) -> float:
    """The shortest pause of a scheduled poll while `watched` contacts are watched (`fifo`: of a
    contact known to wait in a queue that serves oldest first); 0 without a budget share."""
    share = policy.poll_budget_share
    if fifo and policy.fifo_poll_budget_share is not None:
        share = policy.fifo_poll_budget_share
    if share is None or policy.describe_rate is None:
        return 0.0
    return watched / (share * policy.describe_rate)


def fill_ceiling(policy: WatchPolicy, standing: Standing) -> float | None:
    """The backoff's ceiling that makes the scheduled polls fill the budget, polling only.

    The watched contacts share `fill_budget_share` of the DescribeContact rate evenly, each
    polling on average every watched / share seconds; where the heads poll faster than that
    (every `head_interval`), the others share what the heads leave. The ceiling is that mean
    pause over the jitter's mean draw (1 - jitter / 2), and never below `min_interval_s`.

    None where the rule does not apply: no budget known, `fill_budget_share` 0, contact events
    on (`poll_budget_share` set: the safety net keeps its small share), or heads that take all
    of the share."""
    rate = policy.describe_rate
    if rate is None or not policy.fill_budget_share or policy.poll_budget_share is not None:
        return None
    share = policy.fill_budget_share * rate
    watched = max(1, standing.watched)
    heads = min(standing.heads, watched) if policy.queue_aware else 0
    mean = watched / share
    if heads:
        interval = head_interval(policy, heads, watched)
        if mean > interval:  # the heads poll faster than the rest: those share what they leave
            spare = share - heads / interval
            if spare <= 0 or heads == watched:
                return None
            mean = (watched - heads) / spare
    return max(policy.min_interval_s, mean / (1.0 - policy.jitter / 2))


def head_interval(policy: WatchPolicy, heads_total: int, watched: int = 0) -> float:
    """How often each head polls when `heads_total` contacts poll as heads among `watched`
    watched contacts: never more often than `head_interval_s`, all heads together within their
    share of the budget, and each at most `head_boost` times as often as the average watched
    contact could at the budget's rate."""
    if policy.describe_rate is None:
        return policy.head_interval_s
    return max(
        policy.head_interval_s,
        heads_total / (policy.head_budget_share * policy.describe_rate),
        watched / (policy.head_boost * policy.describe_rate),
    )


def watch_pause(
    policy: WatchPolicy,
    standing: Standing,
    *,
    step: int,
    draw: float,
    elapsed_s: float,
    left_s: float,
) -> Pause:
    """The rest of the pause before the next poll of a contact polled `step` times, `elapsed_s`
    into a pause whose jitter is `draw` (`jitter_draw`), `left_s` before its deadline."""
    backoff = backoff_s(policy, step)
    ceiling = fill_ceiling(policy, standing)
    if ceiling is not None:
        backoff = min(backoff, ceiling)
    floor = scheduled_floor(policy, standing.watched, fifo=standing.fifo)
    pause = max(backoff, floor) * draw
    if policy.queue_aware and standing.head:
        pause = min(pause, head_interval(policy, standing.heads, standing.watched))
    sleep_s = max(0.0, min(pause - elapsed_s, left_s))
    if floor > backoff and sleep_s > policy.floor_recheck_s:
        return Pause(policy.floor_recheck_s, recheck=True)
    return Pause(sleep_s)
