"""The waiting customer's place in line: the policy of whom to ask, and contact.queue_position
events against the emulator (other applications' contacts ahead, contacts leaving between calls,
a scarce budget, AccessDenied), never after the agent connected or a final event."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
from structlog.testing import capture_logs

from orchestrator.clock import SystemClock
from orchestrator.connect.operations import DEFAULT_QUOTAS, Operation, Quota
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.lifecycle import LifecycleEngine
from orchestrator.engine.queue_position import (
    Candidate,
    PositionPolicy,
    PositionUpdates,
    is_news,
    next_to_ask,
)
from orchestrator.engine.watch import WatchPolicy
from orchestrator.errors import SinkError
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from orchestrator.testing.waiting import eventually
from tests.support.engine import call_request, make_engine
from tests.support.peers import ClientFactory

Starter = Callable[..., Any]

#: Polls often enough to place contacts in their queue within a second.
WATCH = WatchPolicy(first_delay_s=0.1, multiplier=1.5, max_interval_s=0.5, max_wait_s=60.0)
#: Asks every contact at least every second: nothing moves by itself in these tests.
POLICY = PositionPolicy(max_age_s=1.0, unplaced_after_s=0.5, retry_s=0.2)
#: A contact-center model where nobody is served unless the test says so.
STILL_CENTER: dict[str, Any] = {
    "agents": 1,
    "handle_time_s": (600.0, 600.0),
    "patience_s": (600.0, 600.0),
    "max_concurrent_calls": None,
}


def positions_of(events: list[LifecycleEvent], request_id: str) -> list[int]:
    return [
        e.data["position"]
        for e in events
        if e.type is EventType.QUEUE_POSITION and e.request_id == request_id
    ]


def last_position(events: list[LifecycleEvent], request_id: str) -> int | None:
    heard = positions_of(events, request_id)
    return heard[-1] if heard else None


def assert_nothing_after_the_wait(events: list[LifecycleEvent]) -> None:
    """No position event of a request after its agent connected or its final event."""
    over: set[str] = set()
    for event in events:
        if event.type is EventType.QUEUE_POSITION:
            assert event.request_id not in over, f"position after the wait: {event.id}"
        if event.type is EventType.AGENT_CONNECTED or event.final:
            over.add(event.request_id)


# -- the policy -------------------------------------------------------------------------------


def candidate(contact_id: str, **fields: Any) -> Candidate:
    values: dict[str, Any] = {
        "registered_at": 0.0,
        "asked_at": 10.0,
        "placed": True,
        "position": 5,
        "expected_change": 0.0,
    }
    values.update(fields)
    return Candidate(contact_id, **values)


def test_a_contact_never_answered_goes_first_oldest_first() -> None:
    policy = PositionPolicy()
    candidates = [
        candidate("asked", expected_change=3.0),
        candidate("new-late", asked_at=None, position=None, registered_at=5.0),
        candidate("new-early", asked_at=None, position=None, registered_at=4.0),
    ]
    assert next_to_ask(candidates, policy, now=20.0) == "new-early"


def test_an_unplaced_contact_waits_for_its_queue_a_while() -> None:
    policy = PositionPolicy(unplaced_after_s=3.0)
    new = candidate("new", asked_at=None, position=None, placed=False, registered_at=10.0)
    assert next_to_ask([new], policy, now=11.0) is None
    assert next_to_ask([new], policy, now=13.5) == "new"


def test_nothing_is_asked_while_no_change_is_expected() -> None:
    policy = PositionPolicy(min_expected_change=0.5, max_age_s=60.0)
    quiet = [candidate("a", expected_change=0.2), candidate("b", expected_change=0.4)]
    assert next_to_ask(quiet, policy, now=20.0) is None


def test_among_equal_expectations_the_head_is_asked_before_the_tail() -> None:
    policy = PositionPolicy()
    line = [
        candidate("tail", position=40, asked_at=0.0, expected_change=1.0),
        candidate("head", position=1, asked_at=5.0, expected_change=1.0),
    ]
    # The head answered 5 s later than #40, and is still the one asked.
    assert next_to_ask(line, policy, now=20.0) == "head"


def test_every_contact_is_asked_again_within_max_age() -> None:
    policy = PositionPolicy(max_age_s=30.0)
    old = candidate("old", position=40, asked_at=0.0, expected_change=0.0)
    assert next_to_ask([old], policy, now=29.0) is None
    assert next_to_ask([old], policy, now=31.0) == "old"


def test_a_contact_backing_off_is_not_asked() -> None:
    policy = PositionPolicy()
    backing_off = candidate("x", asked_at=None, position=None, retry_at=12.0)
    assert next_to_ask([backing_off], policy, now=11.0) is None
    assert next_to_ask([backing_off], policy, now=12.0) == "x"


def test_the_fixed_refresh_asks_each_contact_on_its_period_only() -> None:
    policy = PositionPolicy(fixed_refresh_s=10.0)
    line = [candidate("a", asked_at=5.0, expected_change=9.0), candidate("b", asked_at=1.0)]
    assert next_to_ask(line, policy, now=10.0) is None
    assert next_to_ask(line, policy, now=11.5) == "b"


def test_small_estimate_jitter_is_not_news() -> None:
    policy = PositionPolicy(estimate_change_s=10.0, estimate_change_share=0.2)
    assert is_news(None, 3, 90.0, policy)
    assert is_news((3, 90.0), 2, 90.0, policy)  # the position moved
    assert not is_news((3, 90.0), 3, 99.0, policy)  # 9 s: jitter
    assert not is_news((3, 100.0), 3, 119.0, policy)  # 19 s < 20 % of 100 s
    assert is_news((3, 100.0), 3, 125.0, policy)
    assert is_news((3, 10.0), 3, 21.0, policy)  # past the 10 s floor


async def test_position_updates_are_ordered_and_none_follow_closing() -> None:
    published: list[int] = []
    release = anyio.Event()

    async def publish(data: dict[str, Any], seq: int) -> None:
        await release.wait()
        published.append(data["position"])

    updates = PositionUpdates(publish, SystemClock())
    closed = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(updates.publish, {"position": 3})
        await anyio.wait_all_tasks_blocked()

        async def close() -> None:
            await updates.close()
            closed.set()

        tg.start_soon(close)
        await anyio.wait_all_tasks_blocked()
        assert not closed.is_set(), "close must wait for the event being published"
        release.set()
    assert published == [3]
    assert await updates.publish({"position": 2}) is False
    assert published == [3]


# -- against the emulator ----------------------------------------------------------------------


async def run_all(engine: LifecycleEngine, request_ids: list[str], *, body: Any) -> None:
    """Run the requests and the position service; `body` acts while they run, then the
    requests are left to finish and the service is cancelled."""
    assert engine.positions is not None
    async with anyio.create_task_group() as service:
        service.start_soon(engine.positions.run)
        async with anyio.create_task_group() as lifecycles:
            for rid in request_ids:
                lifecycles.start_soon(engine.run, call_request(rid))
            await body()
        service.cancel_scope.cancel()


@dataclass
class Rig:
    """An emulator, and an engine with its position service and an in-memory sink."""

    control: EmulatorControl
    sink: MemorySink
    engine: LifecycleEngine

    async def everyone_heard(self, ids: list[str]) -> None:
        await eventually(lambda: all(last_position(self.sink.events, r) for r in ids), within=60)


async def rig(
    start_emulator: Starter,
    client_for: ClientFactory,
    *,
    policy: PositionPolicy = POLICY,
    budget: RateBudget | None = None,
    **config: Any,
) -> Rig:
    emulator: Emulator = await start_emulator(**config)
    sink = MemorySink()
    engine = make_engine(
        await client_for(emulator), sink, watch=WATCH, positions=policy, budget=budget
    )
    return Rig(EmulatorControl(emulator.url), sink, engine)


def contact_of(sink: MemorySink, request_id: str) -> str | None:
    return next(
        (
            e.contact_id
            for e in sink.events
            if e.type is EventType.STARTED and e.request_id == request_id
        ),
        None,
    )


async def test_positions_count_other_applications_contacts_and_move_when_the_line_moves(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    # One agent busy with an application's call, three of its contacts waiting, then ours.
    peers = await rig(start_emulator, client_for, **STILL_CENTER, background_contacts=4)
    control, sink, engine = peers.control, peers.sink, peers.engine
    ids = ["pos-a", "pos-b", "pos-c"]

    async def body() -> None:
        # Started one by one: queued in this order, behind the other application's three.
        await peers.everyone_heard(ids)
        truth = await control.positions()
        contacts = [contact_of(sink, r) for r in ids]
        expected = sorted(truth[c] for c in contacts if c is not None)
        assert expected == [4, 5, 6]
        await eventually(
            lambda: sorted(last_position(sink.events, r) or 0 for r in ids) == expected,
            within=30,
        )
        # Another application's contact ahead is served: everyone moves up, learned by asking.
        waiting = sorted(
            (b for b in await control.background() if b["State"] == "QUEUED"),
            key=lambda b: b["EnqueuedAt"],
        )
        await control.connect_agent(waiting[0]["ContactId"])
        await eventually(
            lambda: sorted(last_position(sink.events, r) or 0 for r in ids) == [3, 4, 5],
            within=30,
        )
        # Our first contact gets an agent: the two behind move up at once (inferred).
        first = min(contacts, key=lambda c: truth[c or ""])
        assert first is not None
        await control.connect_agent(first)
        behind = [r for r, c in zip(ids, contacts, strict=True) if c != first]
        await eventually(
            lambda: sorted(last_position(sink.events, r) or 0 for r in behind) == [3, 4],
            within=30,
        )
        for contact in contacts:
            if contact is not None and contact != first:
                await control.disconnect(contact)

    await run_all(engine, ids, body=body)
    assert_nothing_after_the_wait(sink.events)
    position_events = [e for e in sink.events if e.type is EventType.QUEUE_POSITION]
    assert len({e.id for e in position_events}) == len(position_events)
    assert {e.data["source"] for e in position_events} <= {"connect", "inferred"}
    assert all(e.data["queue_id"] and not e.final for e in position_events)
    assert all(e.data["estimated_wait_s"] is not None for e in position_events)
    stats = await control.op_stats(Operation.GET_CONTACT_METRICS)
    assert stats["throttled"] == 0


async def test_a_connection_seen_moves_those_behind_without_a_call(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    # Nothing expected to move (600 s calls): only the connection seen can tell.
    policy = PositionPolicy(max_age_s=600.0, unplaced_after_s=0.5, retry_s=0.2)
    peers = await rig(
        start_emulator, client_for, policy=policy, **STILL_CENTER, background_contacts=2
    )
    control, sink, engine = peers.control, peers.sink, peers.engine
    ids = ["infer-a", "infer-b", "infer-c"]

    async def body() -> None:
        await peers.everyone_heard(ids)
        truth = await control.positions()
        contacts = {r: contact_of(sink, r) or "" for r in ids}
        order = sorted(ids, key=lambda r: truth[contacts[r]])
        calls = (await control.op_stats(Operation.GET_CONTACT_METRICS))["successes"]
        await control.connect_agent(contacts[order[0]])
        await eventually(
            lambda: [last_position(sink.events, r) for r in order[1:]] == [2, 3], within=30
        )
        told = [
            e
            for e in sink.events
            if e.type is EventType.QUEUE_POSITION and e.request_id in order[1:]
        ]
        assert [e.data["source"] for e in told[-2:]] == ["inferred", "inferred"]
        assert (await control.op_stats(Operation.GET_CONTACT_METRICS))["successes"] == calls
        assert sorted(
            p for c, p in (await control.positions()).items() if c in contacts.values()
        ) == [2, 3]
        for rid in order[1:]:
            await control.disconnect(contacts[rid])

    await run_all(engine, ids, body=body)
    assert_nothing_after_the_wait(sink.events)


async def test_a_contact_leaving_between_calls_moves_those_behind_and_hears_no_more(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    peers = await rig(start_emulator, client_for, **STILL_CENTER, background_contacts=1)
    control, sink, engine = peers.control, peers.sink, peers.engine
    ids = ["leave-a", "leave-b", "leave-c"]

    async def body() -> None:
        await peers.everyone_heard(ids)
        truth = await control.positions()
        contacts = {r: contact_of(sink, r) for r in ids}
        order = sorted(ids, key=lambda r: truth[contacts[r] or ""])
        middle, last = order[1], order[2]
        before = truth[contacts[last] or ""]
        await control.disconnect(contacts[middle] or "")
        await eventually(lambda: last_position(sink.events, last) == before - 1, within=30)
        for rid in (order[0], last):
            await control.disconnect(contacts[rid] or "")

    await run_all(engine, ids, body=body)
    assert_nothing_after_the_wait(sink.events)
    finals = {e.request_id: e.type for e in sink.events if e.final}
    assert set(finals.values()) == {EventType.DISCONNECTED}


async def test_a_scarce_budget_serves_the_head_first_without_throttling(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    # Twelve waiting contacts and a budget of 1 call per second: never a 429, the oldest first.
    quota = Quota(1.0, 2.0)
    budget = RateBudget({**DEFAULT_QUOTAS, Operation.GET_CONTACT_METRICS: quota})
    peers = await rig(
        start_emulator,
        client_for,
        budget=budget,
        **STILL_CENTER,
        background_contacts=2,
        quotas={**{op.value: q for op, q in DEFAULT_QUOTAS.items()}, "GetContactMetrics": quota},
    )
    control, sink, engine = peers.control, peers.sink, peers.engine
    ids = [f"scarce-{i:02d}" for i in range(12)]

    async def body() -> None:
        await peers.everyone_heard(ids)
        truth = await control.positions()
        firsts = [
            e.contact_id
            for e in sink.events
            if e.type is EventType.QUEUE_POSITION and e.data["source"] == "connect"
        ]
        heads = sorted(truth, key=lambda c: truth[c])
        ours = [c for c in heads if c in set(firsts)]
        # The contact first in line among ours heard its place before the last one did.
        first_heard = {c: firsts.index(c) for c in ours}
        assert first_heard[ours[0]] < first_heard[ours[-1]]
        for rid in ids:
            await control.disconnect(contact_of(sink, rid) or "")

    await run_all(engine, ids, body=body)
    assert_nothing_after_the_wait(sink.events)
    stats = await control.op_stats(Operation.GET_CONTACT_METRICS)
    assert stats["throttled"] == 0
    assert budget[Operation.GET_CONTACT_METRICS].throttles == 0


async def test_access_denied_turns_positions_off_with_one_warning_and_calls_go_on(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    peers = await rig(
        start_emulator, client_for, metrics_access_denied=True, agent_delay_s=(1.0, 1.0)
    )
    control, sink, engine = peers.control, peers.sink, peers.engine
    ids = ["denied-a", "denied-b"]
    with capture_logs() as logs:
        await run_all(engine, ids, body=anyio.lowlevel.checkpoint)
    assert engine.positions is not None
    assert engine.positions.unavailable == "AccessDeniedException"
    warnings = [entry for entry in logs if entry["event"] == "queue_position.unavailable"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
    assert not [e for e in sink.events if e.type is EventType.QUEUE_POSITION]
    finals = [e.type for e in sink.events if e.final]
    assert finals == [EventType.SCREEN_SHARING_STARTED] * 2
    assert (await control.op_stats(Operation.GET_CONTACT_METRICS))["calls"] == 1


async def test_no_position_follows_the_agent_even_with_answers_in_flight(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    # Slow answers and a contact asked all the time: answers are in flight when agents connect.
    budget = RateBudget({**DEFAULT_QUOTAS, Operation.GET_CONTACT_METRICS: Quota(50.0, 50.0)})
    policy = PositionPolicy(fixed_refresh_s=0.01, unplaced_after_s=0.2, retry_s=0.05)
    peers = await rig(
        start_emulator,
        client_for,
        policy=policy,
        budget=budget,
        **STILL_CENTER,
        background_contacts=1,
        latency_ms=(50.0, 150.0),
        quotas_enabled=False,
    )
    control, sink, engine = peers.control, peers.sink, peers.engine
    ids = [f"race-{i}" for i in range(4)]

    async def body() -> None:
        await peers.everyone_heard(ids)
        for rid in ids:
            await control.connect_agent(contact_of(sink, rid) or "")

    await run_all(engine, ids, body=body)
    assert_nothing_after_the_wait(sink.events)
    assert [e.type for e in sink.events if e.final] == [EventType.SCREEN_SHARING_STARTED] * 4
    assert engine.positions is not None and engine.positions.calls > len(ids)


async def test_positions_turned_off_ask_nothing_and_tell_nothing(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    off = PositionPolicy(enabled=False)
    peers = await rig(start_emulator, client_for, policy=off, **STILL_CENTER, background_contacts=1)
    control, sink, engine = peers.control, peers.sink, peers.engine

    async def body() -> None:
        contact = await eventually(lambda: contact_of(sink, "off-a"), within=30)
        await eventually(control.positions, within=30)
        await control.connect_agent(contact)

    await run_all(engine, ["off-a"], body=body)
    assert not [e for e in sink.events if e.type is EventType.QUEUE_POSITION]
    assert (await control.op_stats(Operation.GET_CONTACT_METRICS))["calls"] == 0


class FlakyPositions(MemorySink):
    """Refuses the first position event (a sink outage), delivers everything else."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        if not self.refused and any(e.type is EventType.QUEUE_POSITION for e in events):
            self.refused += 1
            raise SinkError("the sinks are down")
        await super().publish(events)


async def test_a_position_the_sinks_refuse_is_told_again_and_the_service_goes_on(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(**STILL_CENTER, background_contacts=1)
    control = EmulatorControl(emulator.url)
    sink = FlakyPositions()
    engine = make_engine(await client_for(emulator), sink, watch=WATCH, positions=POLICY)

    async def body() -> None:
        await eventually(lambda: last_position(sink.events, "flaky-a"), within=30)
        await control.disconnect(contact_of(sink, "flaky-a") or "")

    with capture_logs() as logs:
        await run_all(engine, ["flaky-a"], body=body)
    assert sink.refused == 1
    assert positions_of(sink.events, "flaky-a") == [1]
    assert [e["event"] for e in logs].count("queue_position.not_delivered") == 1
