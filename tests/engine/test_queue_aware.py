"""Queue-aware polling: contacts next in line poll often; a connection wakes those it implies."""

from __future__ import annotations

import random
from contextlib import ExitStack

import anyio
import pytest

from orchestrator.connect.gateway import ContactSnapshot
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.frontier import Poll, QueueFrontier
from orchestrator.engine.pause import head_interval
from orchestrator.engine.watch import WatchPolicy
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from tests.conftest import INSTANCE_ID, emulator_config
from tests.support.clock import SteppingClock, VirtualClock
from tests.support.engine import (
    call_request,
    make_engine,
    polls_by_request,
    settle,
    started_contact,
)
from tests.support.peers import ClientFactory, VirtualEmulatorFactory

# -- the frontier ----------------------------------------------------------------------------


def test_frontier_orders_waiting_contacts_by_enqueue_time_per_queue() -> None:
    frontier = QueueFrontier()
    frontier.waiting("late", "q1", 30.0)
    frontier.waiting("early", "q1", 10.0)
    frontier.waiting("middle", "q1", 20.0)
    frontier.waiting("other-queue", "q2", 5.0)

    assert frontier.heads("q1", 2) == ["early", "middle"]
    assert frontier.heads("q2", 2) == ["other-queue"]
    assert [frontier.position(c) for c in ("early", "middle", "late")] == [0, 1, 2]
    assert frontier.position("unknown") is None
    assert frontier.passed("q1", 25.0, limit=5) == ["early", "middle"]
    assert frontier.passed("q1", 25.0, limit=1) == ["early"]  # the oldest first
    assert frontier.passed("q3", 25.0, limit=5) == []


def test_frontier_forgets_and_moves_contacts() -> None:
    frontier = QueueFrontier()
    frontier.waiting("a", "q1", 10.0)
    frontier.waiting("b", "q1", 20.0)
    frontier.waiting("a", "q1", 10.0)  # the same again changes nothing
    assert len(frontier) == 2

    frontier.forget("a")
    assert frontier.heads("q1", 5) == ["b"]
    frontier.waiting("b", "q2", 1.0)  # transferred to another queue
    assert frontier.heads("q1", 5) == []
    assert frontier.heads("q2", 5) == ["b"]
    frontier.forget("b")
    frontier.forget("b")  # idempotent
    assert len(frontier) == 0


def test_contacts_enqueued_within_the_same_millisecond_are_never_inferred_passed() -> None:
    frontier = QueueFrontier()
    # From a QUEUED event (Connect's events carry milliseconds), and from polls.
    frontier.waiting("same-ms", "q1", 1_800_000_000.123)
    frontier.waiting("earlier", "q1", 1_800_000_000.122)

    # A contact seen connected, enqueued at ...123.4 ms by DescribeContact's clock.
    assert frontier.passed("q1", 1_800_000_000.1234, limit=5) == ["earlier"]
    assert frontier.passed("q1", 1_800_000_000.124, limit=5) == ["earlier", "same-ms"]


def test_frontier_stops_inferring_for_a_queue_that_is_not_fifo() -> None:
    frontier = QueueFrontier()
    for i in range(30):
        frontier.waiting(f"old-{i}", "q1", float(i))
    # Agents keep taking young contacts while the old ones still wait: each inference is wrong.
    wrong = 0
    while frontier.fifo_score("q1") >= 0.5:
        (suspect,) = frontier.passed("q1", 1000.0, limit=1)
        frontier.judge(suspect, served=False)
        wrong += 1
    assert wrong == 7  # 0.9**7 < 0.5: a few mistakes, then it stops
    woken = [frontier.passed("q1", 1000.0, limit=1) for _ in range(40)]
    assert sum(1 for w in woken if w) == 2  # only an occasional probe from then on


def test_frontier_keeps_inferring_for_a_fifo_queue_and_forgets_suspects() -> None:
    frontier = QueueFrontier()
    for i in range(5):
        frontier.waiting(f"c{i}", "q1", float(i))
    for _ in range(20):
        (suspect,) = frontier.passed("q1", 100.0, limit=1)
        frontier.judge(suspect, served=True)
    assert frontier.fifo_score("q1") == 1.0
    (suspect,) = frontier.passed("q1", 100.0, limit=1)
    frontier.forget(suspect)  # its watch ended before the confirming poll
    frontier.judge(suspect, served=False)  # no longer a suspect: nothing learned
    assert frontier.fifo_score("q1") == 1.0


def test_a_poll_teaches_the_frontier_and_names_the_contacts_now_due() -> None:
    frontier = QueueFrontier()
    for enqueued_at, contact_id in enumerate(("a", "b", "c", "d")):
        frontier.waiting(contact_id, "q1", float(enqueued_at))

    # "b", a head, is seen connected: "a" was passed over, and "c" is a head now.
    connected = ContactSnapshot("b", queue_id="q1", enqueued_at=1.0, agent_connected_at=50.0)
    seen = Poll(connected, asked_at=60.0, served=True, took_agent=True)
    assert frontier.after_poll(seen, head_contacts=2, wake_limit=2) == (False, ["a", "c"])
    assert frontier.position("b") is None

    # "a" turns out still waiting: the inference was wrong, one strike against the queue.
    waiting = Poll(ContactSnapshot("a", queue_id="q1", enqueued_at=0.0), 61.0, False, False)
    assert frontier.after_poll(waiting, head_contacts=2, wake_limit=2) == (True, [])
    assert frontier.fifo_score("q1") < 1.0
    assert frontier.heads("q1", 2) == ["a", "c"]


# -- the watch -------------------------------------------------------------------------------


async def test_the_oldest_waiting_contact_polls_at_the_head_interval(
    start_virtual_emulator: VirtualEmulatorFactory,
    client_for: ClientFactory,
    vclock: VirtualClock,
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(10.0, 10.0), flow_delay_s=0.0)
    policy = WatchPolicy(
        first_delay_s=2, multiplier=2, max_interval_s=30, head_interval_s=1, jitter=0
    )
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink, clock=vclock, watch=policy)

    final = await engine.run(call_request("head-1"))

    assert final.type is EventType.SCREEN_SHARING_STARTED
    # The first poll learns the contact's place in its queue; alone, it is the head from then
    # on and polls every second instead of backing off (4, 8, ... seconds).
    assert vclock.slept == [2, 1, 1, 1, 1, 1, 1, 1, 1]
    connected = next(e for e in sink.events if e.type is EventType.AGENT_CONNECTED)
    assert connected.data["waited_s"] == 10.0
    assert len(engine.notifier.frontier) == 0  # nothing left behind


async def test_without_queue_awareness_the_same_contact_backs_off(
    start_virtual_emulator: VirtualEmulatorFactory,
    client_for: ClientFactory,
    vclock: VirtualClock,
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(10.0, 10.0), flow_delay_s=0.0)
    policy = WatchPolicy(
        first_delay_s=2, multiplier=2, max_interval_s=30, jitter=0, queue_aware=False
    )
    engine = make_engine(await client_for(emulator), MemorySink(), clock=vclock, watch=policy)

    await engine.run(call_request("plain-1"))

    assert vclock.slept == [2, 4, 8]  # detected at 14 s, 4 s after the agent connected


async def test_a_detected_connection_wakes_the_contacts_enqueued_before_it(
    client_for: ClientFactory,
) -> None:
    clock = SteppingClock()
    emulator = Emulator(
        emulator_config(agent_delay_s=(500.0, 500.0), flow_delay_s=0.0), clock=clock.time
    )
    # No head polling and a long backoff: only the FIFO inference can wake the older contact.
    policy = WatchPolicy(
        first_delay_s=5, max_interval_s=100, max_wait_s=900, jitter=0, head_contacts=0
    )
    sink = MemorySink()
    async with emulator:
        engine = make_engine(await client_for(emulator), sink, clock=clock, watch=policy)
        control = EmulatorControl(emulator.url)
        results: list[LifecycleEvent] = []

        async def run(request_id: str) -> None:
            results.append(await engine.run(call_request(request_id)))

        def started(request_id: str) -> str | None:
            return started_contact(sink.events, request_id)

        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run, "older")
                await settle(lambda: started("older") is not None and clock.sleeping == 1)
                clock.advance(1)  # the younger contact is enqueued a second later
                tg.start_soon(run, "younger")
                await settle(lambda: started("younger") is not None and clock.sleeping == 2)
                clock.advance(5)  # both poll once and learn their places in the queue
                await settle(lambda: len(engine.notifier.frontier) == 2)
                older, younger = started("older"), started("younger")
                assert older is not None and younger is not None
                await control.connect_agent(older)
                await control.connect_agent(younger)
                # Something (a contact event, say) tells the younger contact's watch to look.
                assert engine.notifier.ring(younger)

        assert {e.request_id: e.type for e in results} == {
            "older": EventType.SCREEN_SHARING_STARTED,
            "younger": EventType.SCREEN_SHARING_STARTED,
        }
        polls = polls_by_request(sink.events)
        assert polls == {"older": 2, "younger": 2}
        assert clock.monotonic() == 6.0  # nobody waited for a backoff pause to end


# -- the heads' share of the budget ------------------------------------------------------------


def test_a_head_polls_at_most_a_few_times_as_often_as_the_average_watched_contact() -> None:
    policy = WatchPolicy(head_interval_s=1, describe_rate=2, head_budget_share=0.25, head_boost=4)

    # 2 heads may use 0.5 polls/s: every 4 s each, while few contacts are watched...
    assert head_interval(policy, 2, watched=10) == 4
    # ...but with 60 watched, each could poll every 30 s on the whole budget: heads every 7.5 s.
    assert head_interval(policy, 2, watched=60) == 7.5
    generous = WatchPolicy(head_interval_s=1, describe_rate=10, head_boost=4)
    assert head_interval(generous, 2, watched=20) == 1  # the budget is ample: every second
    assert head_interval(generous, 2, watched=60) == 1.5
    for watched in (1, 10, 100, 1000):  # never more than head_boost times the fair share
        assert 1 / head_interval(policy, 2, watched) <= 4 * 2 / watched + 1e-9
    with pytest.raises(ValueError, match="head_boost"):
        WatchPolicy(head_boost=0.5)


def test_heads_poll_within_their_share_of_the_describe_budget() -> None:
    unbounded = WatchPolicy(head_interval_s=1)
    bounded = WatchPolicy(head_interval_s=1, describe_rate=10, head_budget_share=0.25)

    assert head_interval(unbounded, 500) == 1
    assert head_interval(bounded, 2) == 1  # 2 heads need 2 polls/s of the 2.5 they may use
    assert head_interval(bounded, 20) == 8  # 20 heads share 2.5 polls/s
    for heads in (1, 7, 40, 1000):  # all heads together never exceed their share
        assert heads / head_interval(bounded, heads) <= 0.25 * 10 + 1e-9


def test_head_total_counts_only_the_heads_of_fifo_queues() -> None:
    frontier = QueueFrontier()
    for i in range(5):
        frontier.waiting(f"a{i}", "qa", float(i))
    frontier.waiting("b0", "qb", 0.0)
    assert frontier.head_total(2) == 3
    assert frontier.is_head("a1", 2) and not frontier.is_head("a2", 2)

    for _ in range(7):  # qa turns out not to be FIFO
        (suspect,) = frontier.passed("qa", 100.0, limit=1)
        frontier.judge(suspect, served=False)
    assert not frontier.fifo("qa")
    assert frontier.head_total(2) == 1
    assert not frontier.is_head("a0", 2)  # back to plain backoff


@pytest.mark.timeout(10)
def test_a_head_still_waiting_after_a_younger_contact_was_served_counts_against_fifo() -> None:
    frontier = QueueFrontier()
    frontier.waiting("old", "q", 10.0)
    frontier.waiting("young", "q", 20.0)
    frontier.forget("young")
    frontier.connected("q", enqueued_at=20.0, connected_at=100.0)

    frontier.still_waiting("old", asked_at=100.5)  # within the skew: not yet evidence
    assert frontier.fifo_score("q") == 1.0
    frontier.still_waiting("old", asked_at=105.0)
    assert frontier.fifo_score("q") == 0.9
    frontier.still_waiting("old", asked_at=106.0)  # the same connection counts once
    assert frontier.fifo_score("q") == 0.9
    # Older than the head: no strike for the head, but served after a younger one: one strike
    # for the order of the two connections.
    frontier.connected("q", enqueued_at=5.0, connected_at=107.0)
    frontier.still_waiting("old", asked_at=110.0)
    assert frontier.fifo_score("q") == pytest.approx(0.81)

    strikes = 2
    while frontier.fifo("q"):  # younger contacts keep being served, in order, before the head
        frontier.connected("q", enqueued_at=30.0 + strikes, connected_at=200.0 + 10 * strikes)
        frontier.still_waiting("old", asked_at=205.0 + 10 * strikes)
        strikes += 1
    assert strikes == 7  # 0.9**7 < 0.5
    assert not frontier.is_head("old", 2)


def test_connections_out_of_enqueue_order_count_against_fifo() -> None:
    frontier = QueueFrontier()
    for i in range(20):  # served oldest first: no evidence against FIFO
        frontier.connected("q", enqueued_at=float(i), connected_at=100.0 + i)
    assert frontier.fifo_score("q") == 1.0
    # Two agents answering at nearly the same moment (within the slack): no evidence either.
    frontier.connected("q", enqueued_at=21.0, connected_at=120.5)
    frontier.connected("q", enqueued_at=20.0, connected_at=121.0)
    assert frontier.fifo_score("q") == 1.0
    # An older contact that got its agent clearly after a younger one: a strike, once.
    frontier.connected("q", enqueued_at=19.5, connected_at=125.0)
    assert frontier.fifo_score("q") == pytest.approx(0.9)
    # Seen the other way round (the younger's connection noticed last): a strike too.
    frontier.connected("q", enqueued_at=30.0, connected_at=123.0)
    assert frontier.fifo_score("q") == pytest.approx(0.81)
    assert frontier.fifo_score("other") == 1.0  # per queue


def test_a_queue_served_in_random_order_stops_head_polling_within_a_few_connections() -> None:
    rng = random.Random(3)
    frontier = QueueFrontier()
    enqueued = [float(i) for i in range(60)]
    for i, at in enumerate(enqueued):
        frontier.waiting(f"c{i}", "q", at)
    order = list(range(60))
    rng.shuffle(order)  # agents take waiting contacts in no particular order
    seen = 0
    for i in order:
        if not frontier.fifo("q"):
            break
        frontier.forget(f"c{i}")
        frontier.connected("q", enqueued_at=enqueued[i], connected_at=100.0 + 2 * seen)
        seen += 1
    assert seen <= 10  # 7 strikes, and the first connections are rarely out of order
    assert frontier.head_total(2) == 0
    assert not frontier.is_head(frontier.heads("q", 1)[0], 2)


async def test_many_heads_stretch_the_head_interval_to_their_budget_share(
    start_virtual_emulator: VirtualEmulatorFactory,
    client_for: ClientFactory,
    vclock: VirtualClock,
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(40.0, 40.0), flow_delay_s=0.0)
    # 4 polls/s of DescribeContact, heads may use half: 19 heads poll every 9.5 s at most
    # (the heads' own share: no budget fill).
    policy = WatchPolicy(
        first_delay_s=2,
        multiplier=2,
        max_interval_s=30,
        head_interval_s=1,
        jitter=0,
        describe_rate=4,
        head_budget_share=0.5,
        fill_budget_share=0,
    )
    engine = make_engine(await client_for(emulator), MemorySink(), clock=vclock, watch=policy)
    for queue in range(9):  # contacts other engines' watches keep at the head of 9 queues
        for place in range(2):
            engine.notifier.frontier.waiting(f"other-{queue}-{place}", f"q{queue}", 0.0)

    await engine.run(call_request("crowded-1"))

    # Alone it would poll every second; with 18 other heads it keeps to the share (and never
    # polls less often than plain backoff would: 2, 4, 8, 16, 30).
    assert vclock.slept == [2, 4, 8, 9.5, 9.5, 9.5]


async def test_a_head_passed_over_by_a_younger_contact_counts_once_as_a_head_and_once_by_its_connection(  # noqa: E501
    client_for: ClientFactory,
) -> None:
    clock = SteppingClock()
    emulator = Emulator(
        emulator_config(agent_delay_s=(500.0, 500.0), flow_delay_s=0.0), clock=clock.time
    )
    policy = WatchPolicy(first_delay_s=5, max_interval_s=100, max_wait_s=900, jitter=0)
    sink = MemorySink()
    async with emulator:
        connect = await client_for(emulator)
        engine = make_engine(connect, sink, clock=clock, watch=policy)
        control = EmulatorControl(emulator.url)
        frontier = engine.notifier.frontier

        def started(request_id: str) -> str | None:
            return started_contact(sink.events, request_id)

        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(engine.run, call_request("older"))
                await settle(lambda: started("older") is not None and clock.sleeping == 1)
                clock.advance(1)
                tg.start_soon(engine.run, call_request("younger"))
                await settle(lambda: started("younger") is not None and clock.sleeping == 2)
                clock.advance(5)  # both poll once and learn their places
                await settle(lambda: len(frontier) == 2 and clock.sleeping == 2)
                older, younger = started("older"), started("younger")
                assert older is not None and younger is not None
                queue = (await connect.describe_contact(InstanceId=INSTANCE_ID, ContactId=older))[
                    "Contact"
                ]["QueueInfo"]["Id"]
                # Not FIFO: the agent takes the younger contact while the older one waits.
                await control.connect_agent(younger)
                assert engine.notifier.ring(younger)
                await settle(lambda: len(frontier) == 1 and clock.sleeping == 1)
                clock.advance(2)  # the older head polls (every second): still waiting
                await settle(lambda: frontier.fifo_score(queue) < 1.0 and clock.sleeping == 1)
                await control.connect_agent(older)
                clock.advance(100)

        # One strike from the head's polls (however many), one when its own connection is seen
        # to come after the younger one's.
        assert frontier.fifo_score(queue) == pytest.approx(0.81)
        assert len(frontier) == 0


async def test_with_many_contacts_watched_a_head_polls_at_a_few_times_their_fair_share(
    start_virtual_emulator: VirtualEmulatorFactory,
    client_for: ClientFactory,
    vclock: VirtualClock,
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(10.0, 10.0), flow_delay_s=0.0)
    # 4 polls/s; 40 contacts watched could each poll every 10 s: a head every 2.5 s at most.
    policy = WatchPolicy(
        first_delay_s=2,
        multiplier=2,
        max_interval_s=30,
        head_interval_s=1,
        jitter=0,
        describe_rate=4,
        head_budget_share=1,
        head_boost=4,
    )
    engine = make_engine(await client_for(emulator), MemorySink(), clock=vclock, watch=policy)
    with ExitStack() as others:
        for i in range(39):  # contacts other watches of this engine wait for
            others.enter_context(engine.notifier.subscribe(f"other-{i}"))
        await engine.run(call_request("watched-with-39-others"))

    # Alone it would poll every second (see above); among 40 it polls every 2.5 s.
    assert vclock.slept == [2, 2.5, 2.5, 2.5, 2.5]


@pytest.mark.parametrize("fifo", [True, False], ids=["fifo", "not-fifo"])
async def test_a_head_that_leaves_wakes_the_next_head_only_in_a_fifo_queue(
    client_for: ClientFactory, fifo: bool
) -> None:
    clock = SteppingClock()
    emulator = Emulator(
        emulator_config(agent_delay_s=(500.0, 500.0), flow_delay_s=0.0), clock=clock.time
    )
    policy = WatchPolicy(
        first_delay_s=5, max_interval_s=100, max_wait_s=900, jitter=0, head_contacts=1
    )
    sink = MemorySink()
    async with emulator:
        connect = await client_for(emulator)
        engine = make_engine(connect, sink, clock=clock, watch=policy)
        control = EmulatorControl(emulator.url)
        frontier = engine.notifier.frontier
        done: list[str] = []

        async def run(request_id: str) -> None:
            await engine.run(call_request(request_id))
            done.append(request_id)

        def started(request_id: str) -> str:
            contact_id = started_contact(sink.events, request_id)
            assert contact_id is not None
            return contact_id

        async def asleep(watches: int) -> None:
            """Until `watches` contacts have started and all of them sleep."""
            await settle(
                lambda: (
                    clock.sleeping == watches
                    and sum(1 for e in sink.events if e.type is EventType.STARTED) == watches
                )
            )

        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                for waiting, name in enumerate(("older", "middle", "younger"), start=1):
                    tg.start_soon(run, name)
                    await asleep(waiting)
                    clock.advance(1)
                clock.advance(4)  # each polls once and learns its place in the queue
                await settle(lambda: len(frontier) == 3 and clock.sleeping == 3)
                older, middle = started("older"), started("middle")
                queue = (await connect.describe_contact(InstanceId=INSTANCE_ID, ContactId=older))[
                    "Contact"
                ]["QueueInfo"]["Id"]
                if not fifo:  # connections seen out of order: the queue is not FIFO
                    for k in range(8):
                        frontier.connected(queue, enqueued_at=100.0 - k, connected_at=10.0 * k)
                assert frontier.fifo(queue) is fifo
                await control.connect_agent(older)
                assert engine.notifier.ring(older)  # the head is seen connected: it leaves
                await settle(lambda: done == ["older"] and clock.sleeping == 2)
                middle_polls = (await control.contact(middle))["DescribeContactCalls"]
                await control.connect_agent(middle)
                await control.connect_agent(started("younger"))
                clock.advance(200)

        # FIFO: the middle contact is the new head, next in line, and polls at once.
        assert middle_polls == (2 if fifo else 1)
