"""The watch's pause as a pure function: no emulator, no clock, a table of what is known and
what the watch must do (sleep how long, then poll or work the pause out again)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from orchestrator.engine.pause import Pause, Standing, backoff_s, fill_ceiling, watch_pause
from orchestrator.engine.watch import WatchPolicy

#: Backoff 2, 4, 8, 16, 30, 30 s, no jitter unless a case draws one.
PLAIN = {"queue_aware": False, "first_delay_s": 2, "multiplier": 2, "max_interval_s": 30}
#: Contact events on: scheduled polls of all watched contacts share 10 % of 1 DescribeContact/s
#: (5 % for contacts known to wait in a FIFO queue), the floor looked at again every 5 s.
NET = {
    **PLAIN,
    "first_delay_s": 1,
    "max_interval_s": 1,
    "describe_rate": 1.0,
    "poll_budget_share": 0.1,
    "fifo_poll_budget_share": 0.05,
    "floor_recheck_s": 5,
}
#: Queue-aware: the heads together may use a quarter of 2 DescribeContact/s (one head: every
#: 2 s; eight: every 16 s each). The heads alone: no budget fill (see FILL).
HEADS = {
    **PLAIN,
    "queue_aware": True,
    "head_interval_s": 1,
    "describe_rate": 2.0,
    "fill_budget_share": 0,
}
#: Polling only, 10 DescribeContact/s of which the scheduled polls may fill 80 %: 8 polls/s
#: shared by the watched contacts, none more often than every second.
FILL = {
    **PLAIN,
    "describe_rate": 10.0,
    "fill_budget_share": 0.8,
    "min_interval_s": 1,
    "jitter": 0,
}

FAR = 1e9  # seconds left before the deadline


@pytest.mark.parametrize(
    ("policy", "standing", "known", "expected"),
    [
        # The backoff: doubling up to the cap, whatever the step.
        (PLAIN, Standing(), {"step": 0}, Pause(2)),
        (PLAIN, Standing(), {"step": 3}, Pause(16)),
        (PLAIN, Standing(), {"step": 4}, Pause(30)),
        (PLAIN, Standing(), {"step": 10_000}, Pause(30)),
        # Jitter scales the pause down, never up.
        (PLAIN, Standing(), {"step": 2, "draw": 0.75}, Pause(6)),
        # Time already slept counts; the deadline cuts the pause; nothing is negative.
        (PLAIN, Standing(), {"step": 3, "elapsed_s": 10}, Pause(6)),
        (PLAIN, Standing(), {"step": 4, "left_s": 7}, Pause(7)),
        (PLAIN, Standing(), {"step": 1, "elapsed_s": 9}, Pause(0)),
        (PLAIN, Standing(), {"step": 1, "left_s": -3}, Pause(0)),
        # The safety net's floor: 10 watched share 0.1 polls/s, so 100 s each; while it holds
        # the poll back, sleep 5 s and look again (others may leave)...
        (NET, Standing(watched=10), {}, Pause(5, recheck=True)),
        (NET, Standing(watched=10), {"elapsed_s": 90}, Pause(5, recheck=True)),
        # ...until what is left is within one look, then sleep it and poll.
        (NET, Standing(watched=10), {"elapsed_s": 96}, Pause(4)),
        (NET, Standing(watched=10), {"left_s": 3}, Pause(3)),
        # Alone, the floor is 10 s; 25 s into the pause, it is over.
        (NET, Standing(watched=1), {"elapsed_s": 25}, Pause(0)),
        # The floor is jittered like the backoff.
        (NET, Standing(watched=10), {"draw": 0.8, "elapsed_s": 76}, Pause(4)),
        # Contacts of a FIFO queue lean less on the safety net: 200 s for 10 watched.
        (NET, Standing(watched=10, fifo=True), {"elapsed_s": 196}, Pause(4)),
        (NET, Standing(watched=10, fifo=True), {"elapsed_s": 100}, Pause(5, recheck=True)),
        # Below the backoff the floor changes nothing: no rechecks.
        ({**NET, "max_interval_s": 30, "first_delay_s": 30}, Standing(watched=1), {}, Pause(30)),
        # Polling only (no share): however many are watched.
        (PLAIN, Standing(watched=5000), {"step": 0}, Pause(2)),
        # A head polls at its interval instead of backing off...
        (HEADS, Standing(head=True, heads=1), {"step": 3}, Pause(2)),
        (HEADS, Standing(head=True, heads=1), {"step": 3, "elapsed_s": 0.5}, Pause(1.5)),
        # ...within the heads' share of the budget...
        (HEADS, Standing(watched=8, head=True, heads=8), {"step": 4}, Pause(16)),
        # ...never later than its backoff; and only with queue-aware polling on.
        (HEADS, Standing(watched=8, head=True, heads=8), {"step": 1}, Pause(4)),
        (HEADS, Standing(fifo=True), {"step": 3}, Pause(16)),
        ({**HEADS, "queue_aware": False}, Standing(head=True, heads=1), {"step": 3}, Pause(16)),
        # A head under the safety net's floor polls at its head interval, without rechecks.
        ({**NET, "queue_aware": True}, Standing(watched=10, head=True, heads=1), {}, Pause(4)),
        # The budget fill: 40 watched share 8 polls/s, so the backoff tops out at 5 s instead
        # of 30 s; below that, it is the backoff as before.
        (FILL, Standing(watched=40), {"step": 3}, Pause(5)),
        (FILL, Standing(watched=40), {"step": 10_000}, Pause(5)),
        (FILL, Standing(watched=40), {"step": 1}, Pause(4)),
        # Fewer contacts, more polls each, down to the floor; more, up to max_interval_s.
        (FILL, Standing(watched=16), {"step": 4}, Pause(2)),
        (FILL, Standing(watched=4), {"step": 4}, Pause(1)),
        (FILL, Standing(watched=400), {"step": 4}, Pause(30)),
        # With jitter, the ceiling is set so that the mean pause (7/8 of it) fills the share,
        # and the pause is drawn below it as always.
        ({**FILL, "jitter": 0.25}, Standing(watched=35), {"step": 9}, Pause(5)),
        ({**FILL, "jitter": 0.25}, Standing(watched=35), {"step": 9, "draw": 0.8}, Pause(4)),
        # The heads poll first: 2 heads every second leave 6 polls/s to the 38 others.
        ({**FILL, "queue_aware": True}, Standing(watched=38, heads=2), {"step": 9}, Pause(6)),
        ({**FILL, "queue_aware": True}, Standing(watched=38, head=True, heads=2), {}, Pause(1)),
        # Heads that take the whole share leave nothing to fill: the backoff as before.
        (
            {**FILL, "queue_aware": True, "head_budget_share": 1, "fill_budget_share": 0.1},
            Standing(watched=40, heads=2),
            {"step": 4},
            Pause(30),
        ),
        # Off (0), without a known budget, or with contact events on (the safety net keeps its
        # share): the backoff alone.
        ({**FILL, "fill_budget_share": 0}, Standing(watched=40), {"step": 4}, Pause(30)),
        ({**FILL, "describe_rate": None}, Standing(watched=40), {"step": 4}, Pause(30)),
        (
            {**FILL, "poll_budget_share": 0.5, "floor_recheck_s": 100},
            Standing(watched=40),
            {"step": 4},
            Pause(30),
        ),
    ],
)
def test_the_pause_follows_from_the_policy_and_what_is_known(
    policy: dict[str, Any], standing: Standing, known: dict[str, float], expected: Pause
) -> None:
    when = {"step": 0, "draw": 1.0, "elapsed_s": 0.0, "left_s": FAR, **known}

    pause = watch_pause(
        WatchPolicy(**policy),
        standing,
        step=int(when["step"]),
        draw=when["draw"],
        elapsed_s=when["elapsed_s"],
        left_s=when["left_s"],
    )

    assert pause.recheck is expected.recheck
    assert pause.sleep_s == pytest.approx(expected.sleep_s)


def test_the_backoff_schedule_is_the_same_at_every_step_count() -> None:
    policy = WatchPolicy(first_delay_s=0.05, multiplier=1.5, max_interval_s=0.25)

    schedule = [backoff_s(policy, step) for step in range(8)]

    assert schedule == pytest.approx([0.05, 0.075, 0.1125, 0.16875, 0.25, 0.25, 0.25, 0.25])
    assert backoff_s(WatchPolicy(multiplier=1.0), 10**9) == 2.0  # no growth, and no long loop
    assert math.isfinite(backoff_s(WatchPolicy(multiplier=10.0, max_interval_s=1e300), 10**6))


@pytest.mark.parametrize("heads", [0, 1, 2, 6])
@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5])
def test_the_budget_fill_never_plans_more_polls_than_its_share(heads: int, jitter: float) -> None:
    policy = WatchPolicy(
        describe_rate=10.0, fill_budget_share=0.9, jitter=jitter, head_interval_s=1
    )
    share = 0.9 * 10.0

    for watched in range(max(1, heads), 400):
        ceiling = fill_ceiling(policy, Standing(watched=watched, heads=heads))
        assert ceiling is not None
        if ceiling >= policy.max_interval_s:
            continue  # the backoff alone asks for more than the budget: the fill adds nothing
        # Each contact polls on average every ceiling * (1 - jitter / 2) seconds once its
        # backoff has grown to the ceiling, a head at its interval if that is sooner.
        mean = ceiling * (1 - jitter / 2)
        head = min(mean, max(1.0, heads / (0.25 * 10.0), watched / (4 * 10.0)))
        planned = (watched - heads) / mean + heads / head
        assert planned <= share + 1e-9
        if ceiling > policy.min_interval_s and watched > heads:
            assert planned == pytest.approx(share)  # and it spends the share, no less
