"""The watch: polling schedule, jitter, deadlines and early wake-ups, on virtual time.

The emulator and the engine share one clock, so these tests never really wait: a VirtualClock
moves time forward by each sleep at once; a SteppingClock holds sleepers until the test moves it.
"""

from __future__ import annotations

import random
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
import pytest

from orchestrator.connect.gateway import ContactSnapshot
from orchestrator.engine.doorbells import ContactNotifier, Doorbell
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.frontier import QueueFrontier
from orchestrator.engine.pause import Standing, jitter_draw, scheduled_floor, watch_pause
from orchestrator.engine.request import client_token
from orchestrator.engine.watch import WatchOutcome, WatchPolicy, verdict
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from tests.conftest import emulator_config
from tests.support import eventually
from tests.support.clock import SteppingClock, VirtualClock
from tests.support.engine import call_request, make_engine, types_of
from tests.support.peers import ClientFactory, VirtualEmulatorFactory


def iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def event(sink: MemorySink, type_: EventType) -> LifecycleEvent:
    return next(e for e in sink.events if e.type is type_)


# -- the schedule ----------------------------------------------------------------------------


async def test_polls_back_off_exponentially_up_to_the_max_interval(
    start_virtual_emulator: VirtualEmulatorFactory,
    client_for: ClientFactory,
    vclock: VirtualClock,
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(120.0, 120.0))
    policy = WatchPolicy(
        queue_aware=False,
        first_delay_s=2,
        multiplier=2,
        max_interval_s=30,
        max_wait_s=600,
        jitter=0,
    )
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink, clock=vclock, watch=policy)

    final = await engine.run(call_request("watch-1"))

    assert final.type is EventType.SCREEN_SHARING_STARTED
    assert vclock.slept == [2, 4, 8, 16, 30, 30, 30]
    connected = event(sink, EventType.AGENT_CONNECTED)
    assert connected.data["polls"] == 7
    assert connected.data["waited_s"] == 120.0


def first_pause(policy: WatchPolicy, step: int, rng: random.Random) -> float:
    """The pause after `step` polls of a contact watched alone, far from its deadline."""
    draw = jitter_draw(policy, rng)
    return watch_pause(policy, Standing(), step=step, draw=draw, elapsed_s=0, left_s=1e9).sleep_s


def test_jitter_keeps_every_delay_within_its_band_and_under_the_schedule() -> None:
    policy = WatchPolicy(first_delay_s=1, multiplier=1.5, max_interval_s=10, jitter=0.25)
    exact = WatchPolicy(first_delay_s=1, multiplier=1.5, max_interval_s=10, jitter=0)
    rng = random.Random(3)

    for _ in range(50):
        for step in range(20):
            d = first_pause(exact, step, rng)
            assert 0.75 * d <= first_pause(policy, step, rng) <= d


def test_jitter_spreads_delays_over_the_whole_band() -> None:
    rng = random.Random(5)
    firsts = [first_pause(WatchPolicy(first_delay_s=4, jitter=0.5), 0, rng) for _ in range(500)]

    assert min(firsts) < 2.2
    assert max(firsts) > 3.8


async def test_jittered_watch_on_the_emulator_sleeps_within_the_band(
    start_virtual_emulator: VirtualEmulatorFactory,
    client_for: ClientFactory,
    vclock: VirtualClock,
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(200.0, 200.0))
    policy = WatchPolicy(
        queue_aware=False,
        first_delay_s=2,
        multiplier=2,
        max_interval_s=30,
        max_wait_s=600,
        jitter=0.3,
    )
    engine = make_engine(
        await client_for(emulator), MemorySink(), clock=vclock, watch=policy, seed=11
    )

    final = await engine.run(call_request("jitter-1"))

    assert final.type is EventType.SCREEN_SHARING_STARTED
    schedule = [2, 4, 8, 16, 30, 30, 30, 30, 30, 30, 30, 30][: len(vclock.slept)]
    assert all(0.7 * d <= s <= d for s, d in zip(vclock.slept, schedule, strict=True))
    assert vclock.slept != schedule  # jitter really applied
    assert sum(vclock.slept) >= 200.0


@pytest.mark.parametrize(
    "changes",
    [
        {"first_delay_s": 0},
        {"first_delay_s": 20, "max_interval_s": 10},
        {"multiplier": 0.5},
        {"max_wait_s": 0},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"head_contacts": -1},
        {"head_interval_s": 0},
        {"poll_budget_share": 0},
        {"fifo_poll_budget_share": 1.5},
        {"floor_recheck_s": 0},
    ],
)
def test_watch_policy_refuses_settings_that_make_no_sense(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        WatchPolicy(**changes)


# -- deadlines -------------------------------------------------------------------------------


async def test_agent_that_never_comes_times_out_exactly_at_the_deadline(
    start_virtual_emulator: VirtualEmulatorFactory,
    client_for: ClientFactory,
    vclock: VirtualClock,
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(900.0, 900.0))
    policy = WatchPolicy(
        queue_aware=False, first_delay_s=4, multiplier=2, max_interval_s=60, max_wait_s=10, jitter=0
    )
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink, clock=vclock, watch=policy)
    begin = vclock.time()

    final = await engine.run(call_request("late-1"))

    assert final.type is EventType.TIMED_OUT
    # The last pause is cut to end at the deadline: no poll is wasted past it.
    assert vclock.slept == [4, 6]
    assert final.data["polls"] == 2
    assert final.data["max_wait_s"] == 10
    assert final.data["deadline"] == iso(begin + 10)
    assert types_of(sink.events) == [EventType.RECEIVED, EventType.STARTED, EventType.TIMED_OUT]
    stats = await EmulatorControl(emulator.url).op_stats("StartScreenSharing")
    assert stats["calls"] == 0


@pytest.mark.parametrize(
    ("case", "outcome"),
    [
        # still queued when the request comes back: stopped, or left queued
        ((600.0, "stop"), EventType.TIMED_OUT),
        ((600.0, "leave"), EventType.TIMED_OUT),
        # an agent answered during the outage, after the deadline: with "stop" the customer
        # and the agent are together, so the request goes on (late); with "leave", timed out
        ((350.0, "stop"), EventType.SCREEN_SHARING_STARTED),
        ((350.0, "leave"), EventType.TIMED_OUT),
        # answered within the deadline: resume
        ((100.0, "stop"), EventType.SCREEN_SHARING_STARTED),
    ],
)
async def test_redelivered_request_keeps_the_deadline_of_its_contact(
    start_virtual_emulator: VirtualEmulatorFactory,
    client_for: ClientFactory,
    vclock: VirtualClock,
    case: tuple[float, Literal["stop", "leave"]],
    outcome: EventType,
) -> None:
    agent_delay_s, on_timeout = case
    emulator = await start_virtual_emulator(
        agent_delay_s=(agent_delay_s, agent_delay_s), talk_time_s=(1000.0, 1000.0)
    )
    client = await client_for(emulator)
    request = call_request("outage-1")
    # The first delivery started the contact; then the worker went away for 400 s.
    first = await client.start_web_rtc_contact(
        **request.start_webrtc_contact_params(client_token("outage-1", "start"))
    )
    initiated = vclock.time()
    vclock.advance(400.0)
    policy = WatchPolicy(
        queue_aware=False,
        first_delay_s=5,
        max_interval_s=60,
        max_wait_s=300,
        jitter=0,
        on_timeout=on_timeout,
    )
    sink = MemorySink()

    final = await make_engine(client, sink, clock=vclock, watch=policy).run(request)

    assert final.type is outcome
    assert final.contact_id == first["ContactId"]
    assert vclock.slept == [5]  # one poll decides; the clock was not restarted
    truth = await EmulatorControl(emulator.url).contact(first["ContactId"])
    if outcome is EventType.TIMED_OUT:
        assert final.data["deadline"] == iso(initiated + 300)
        assert final.data["polls"] == 1
        stopped = on_timeout == "stop" and agent_delay_s > 400
        assert final.data["contact_stopped"] is stopped
        assert (truth["DisconnectReason"] == "API") is stopped
    else:
        connected = event(sink, EventType.AGENT_CONNECTED).data
        assert connected["waited_s"] == agent_delay_s
        assert connected.get("late", False) is (agent_delay_s > 300)
        assert truth["StoppedAt"] is None
    assert len(await EmulatorControl(emulator.url).contacts()) == 1


async def test_call_that_ended_before_screen_sharing_is_skipped_as_contact_ended(
    start_virtual_emulator: VirtualEmulatorFactory,
    client_for: ClientFactory,
    vclock: VirtualClock,
) -> None:
    # The agent answers at 10 s and the call ends at 11 s; the first poll, at 20 s, sees both.
    emulator = await start_virtual_emulator(agent_delay_s=(10.0, 10.0), talk_time_s=(1.0, 1.0))
    policy = WatchPolicy(
        queue_aware=False, first_delay_s=20, max_interval_s=20, max_wait_s=300, jitter=0
    )
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink, clock=vclock, watch=policy)

    final = await engine.run(call_request("short-1"))

    assert types_of(sink.events) == [
        EventType.RECEIVED,
        EventType.STARTED,
        EventType.AGENT_CONNECTED,
        EventType.SCREEN_SHARING_SKIPPED,
    ]
    assert final.data["reason"] == "contact_ended"
    contact = (await EmulatorControl(emulator.url).contacts())[0]
    assert final.data["disconnected_at"] == iso(contact["DisconnectedAt"])
    assert contact["ScreenSharingStarts"] == 0


def snapshot(**stamps: float) -> ContactSnapshot:
    return ContactSnapshot(contact_id="c-1", initiated_at=0.0, **stamps)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("stamps", "expected"),
    [
        ({}, None),
        ({"agent_connected_at": 100.0}, WatchOutcome.AGENT_CONNECTED),
        ({"agent_connected_at": 300.0}, WatchOutcome.AGENT_CONNECTED),  # on the deadline
        ({"agent_connected_at": 300.5}, WatchOutcome.TIMED_OUT),
        ({"disconnected_at": 50.0}, WatchOutcome.DISCONNECTED),
        ({"disconnected_at": 301.0}, WatchOutcome.TIMED_OUT),
        # Connected in time and ended since: the agent did connect.
        ({"agent_connected_at": 100.0, "disconnected_at": 200.0}, WatchOutcome.AGENT_CONNECTED),
        ({"agent_connected_at": 400.0, "disconnected_at": 500.0}, WatchOutcome.TIMED_OUT),
    ],
)
def test_verdict_follows_connects_own_timestamps_against_the_deadline(
    stamps: dict[str, float], expected: WatchOutcome | None
) -> None:
    assert verdict(snapshot(**stamps), deadline=300.0) is expected


# -- early wake-ups --------------------------------------------------------------------------


def test_notifier_rings_only_the_current_subscriber_of_a_contact() -> None:
    notifier = ContactNotifier()

    assert notifier.ring("c-1") is False
    with notifier.subscribe("c-1") as doorbell:
        assert len(notifier) == 1
        assert notifier.ring("c-2") is False
        assert notifier.ring("c-1") is True
        assert doorbell.event.is_set()
    assert len(notifier) == 0
    assert notifier.ring("c-1") is False


def test_a_later_doorbell_survives_the_exit_of_an_earlier_one() -> None:
    notifier = ContactNotifier()

    with notifier.subscribe("c-1") as first:
        second_context = notifier.subscribe("c-1")
        second = second_context.__enter__()
    # The first one left; the second still listens.
    assert notifier.ring("c-1") is True
    assert second.event.is_set()
    assert not first.event.is_set()
    second_context.__exit__(None, None, None)
    assert len(notifier) == 0


def test_subscription_rearms_only_after_a_ring() -> None:
    doorbell = Doorbell()
    unrung = doorbell.event

    doorbell.rearm()
    assert doorbell.event is unrung

    doorbell.ring()
    doorbell.rearm()
    assert doorbell.event is not unrung
    assert not doorbell.event.is_set()


async def test_notification_wakes_a_sleeping_watch_which_polls_at_once(
    client_for: ClientFactory,
) -> None:
    clock = SteppingClock()
    emulator = Emulator(emulator_config(agent_delay_s=(500.0, 500.0)), clock=clock.time)
    policy = WatchPolicy(
        queue_aware=False, first_delay_s=100, max_interval_s=100, max_wait_s=900, jitter=0
    )
    sink = MemorySink()
    async with emulator:
        engine = make_engine(await client_for(emulator), sink, clock=clock, watch=policy)
        control = EmulatorControl(emulator.url)
        results: list[LifecycleEvent] = []

        async def run() -> None:
            results.append(await engine.run(call_request("bell-1")))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                started = await eventually(
                    lambda: _started_and_sleeping(sink, clock, engine.notifier)
                )
                assert started.contact_id is not None
                await control.connect_agent(started.contact_id)
                assert engine.notifier.ring(started.contact_id)

        (final,) = results
        assert final.type is EventType.SCREEN_SHARING_STARTED
        assert event(sink, EventType.AGENT_CONNECTED).data["polls"] == 1
        assert clock.monotonic() == 0.0  # nobody waited for the 100 s pause
        assert (await control.op_stats("DescribeContact"))["calls"] == 1


async def _started_and_sleeping(
    sink: MemorySink, clock: SteppingClock, notifier: ContactNotifier
) -> LifecycleEvent | None:
    started = next((e for e in sink.events if e.type is EventType.STARTED), None)
    if started is None or clock.sleeping != 1 or len(notifier) != 1:
        return None
    return started


def test_with_events_on_scheduled_polls_stay_within_their_share_of_the_budget() -> None:
    policy = WatchPolicy(describe_rate=2.0, poll_budget_share=0.25)

    assert scheduled_floor(policy, 70) == pytest.approx(140.0)  # 70 watched: one poll per 140 s
    assert scheduled_floor(policy, 1) == pytest.approx(2.0)
    # Polling only (no share): the schedule alone decides.
    assert scheduled_floor(WatchPolicy(describe_rate=2.0), 70) == 0.0
    assert scheduled_floor(WatchPolicy(poll_budget_share=0.25), 70) == 0.0


def test_contacts_of_a_queue_that_serves_oldest_first_lean_less_on_the_safety_net() -> None:
    policy = WatchPolicy(describe_rate=2.0, poll_budget_share=0.25, fifo_poll_budget_share=0.1)
    frontier = QueueFrontier()
    frontier.waiting("placed", "q1", 10.0)

    assert scheduled_floor(policy, 70, fifo=frontier.in_fifo_queue("placed")) == pytest.approx(350)
    # Not placed yet (no QUEUED event, no poll): the general share.
    assert scheduled_floor(policy, 70, fifo=frontier.in_fifo_queue("unknown")) == pytest.approx(140)
    # A queue whose agents take contacts in another order: lost events are the safety net's.
    for i in range(10):
        frontier.waiting(f"old-{i}", "q1", float(i))
    while frontier.fifo("q1"):
        (suspect,) = frontier.passed("q1", 1000.0, limit=1)
        frontier.judge(suspect, served=False)
    assert scheduled_floor(policy, 70, fifo=frontier.in_fifo_queue("placed")) == pytest.approx(140)
    # Without a FIFO share, every contact has the general one.
    general = WatchPolicy(describe_rate=2.0, poll_budget_share=0.25)
    assert scheduled_floor(general, 70, fifo=True) == pytest.approx(140)


async def test_the_safety_net_polls_sooner_as_other_watched_contacts_leave(
    client_for: ClientFactory,
) -> None:
    clock = SteppingClock()
    emulator = Emulator(emulator_config(agent_delay_s=(500.0, 500.0)), clock=clock.time)
    # Events on: scheduled polls of all watched contacts share 10 % of 1 DescribeContact/s.
    policy = WatchPolicy(
        queue_aware=False,
        first_delay_s=1,
        max_interval_s=1,
        jitter=0,
        describe_rate=1.0,
        poll_budget_share=0.1,
        floor_recheck_s=5,
    )
    sink = MemorySink()
    async with emulator:
        engine = make_engine(await client_for(emulator), sink, clock=clock, watch=policy)
        control = EmulatorControl(emulator.url)
        results: list[LifecycleEvent] = []

        async def run() -> None:
            results.append(await engine.run(call_request("net-1")))

        with anyio.fail_after(10), ExitStack() as others:
            for i in range(9):  # nine other watches: 10 watched, one poll each per 100 s
                others.enter_context(engine.notifier.subscribe(f"other-{i}"))
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                started = await eventually(
                    lambda: (
                        next((e for e in sink.events if e.type is EventType.STARTED), None)
                        if clock.sleeping == 1
                        else None
                    )
                )
                assert started.contact_id is not None
                await control.connect_agent(started.contact_id)
                clock.advance(20)
                await anyio.wait_all_tasks_blocked()
                assert not results  # 20 s in, the floor (100 s) still holds the poll back
                others.close()  # the others leave: alone, the floor is 10 s, already passed
                clock.advance(5)  # the next look at the floor

        (final,) = results
        assert final.type is EventType.SCREEN_SHARING_STARTED
        assert event(sink, EventType.AGENT_CONNECTED).data["polls"] == 1
        assert clock.monotonic() == 25.0  # not the 100 s worked out when it began to wait
