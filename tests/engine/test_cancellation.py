"""Cancels as the engine sees them: a request withdrawn before its start never reaches Connect
(before the first attempt, at the start budget, at the capacity gate); one cancelled while its
contact waits has the contact stopped; once an agent has it, a cancel changes nothing. Each
cancel received here is counted once, by what it achieved."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from orchestrator.connect.capacity import CapacityGate
from orchestrator.connect.gateway import AioConnectGateway, GatewayPolicies
from orchestrator.connect.operations import DEFAULT_QUOTAS, Operation, Quota
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.engine.cancellation import (
    Cancellation,
    CancelResult,
    MemoryTombstones,
    Stage,
    Tombstone,
)
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.lifecycle import LifecycleEngine
from orchestrator.metrics import Metrics
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from tests.support import eventually
from tests.support.clock import VirtualClock
from tests.support.engine import HookSink, call_request, make_engine, started_contact, types_of
from tests.support.peers import ClientFactory

Starter = Callable[..., Any]
START = Operation.START_WEBRTC_CONTACT.value

pytestmark = pytest.mark.timeout(60)


class Counted:
    """What a cancellation counted."""

    def __init__(self) -> None:
        self.results: list[CancelResult] = []

    def __call__(self, result: CancelResult) -> None:
        self.results.append(result)


# -- the cancellation itself ----------------------------------------------------------------------


async def test_tombstones_are_kept_for_their_ttl_and_found_again_by_every_lookup() -> None:
    clock = VirtualClock()
    stones = MemoryTombstones(ttl_s=300.0, clock=clock)
    await stones.record(Tombstone("r-1", cancelled_at=clock.time(), contact_id="c-1"))

    assert (await stones.lookup("r-1")) == Tombstone("r-1", clock.time(), "c-1")
    clock.advance(299.0)
    assert await stones.lookup("r-1") is not None  # a redelivery finds it again
    clock.advance(2.0)
    assert await stones.lookup("r-1") is None
    assert Tombstone.from_json(Tombstone("r-2", 1.5, None, "i").to_json()) == Tombstone(
        "r-2", 1.5, None, "i"
    )


async def test_a_cancel_received_here_is_counted_once_by_what_it_achieved() -> None:
    counted = Counted()
    waiting = Cancellation("r-1", count=counted)
    waiting.started("c-1")
    waiting.request(counted=True)
    assert counted.results == []  # the lifecycle says what it achieved
    waiting.settle(CancelResult.CANCELLED)
    waiting.settle(CancelResult.CANCELLED)
    waiting.request(counted=True)  # a second cancel for the same request
    assert counted.results == [CancelResult.CANCELLED, CancelResult.TOO_LATE]

    connected = Cancellation("r-2", count=counted)
    connected.too_late()
    connected.request(counted=True)
    assert counted.results[-1] is CancelResult.TOO_LATE
    assert connected.stage is Stage.TOO_LATE

    noticed = Cancellation("r-3", count=counted)  # a fleet notice, or a tombstone: not counted
    noticed.request()
    noticed.too_late()
    assert len(counted.results) == 3


async def test_only_a_first_delivery_not_yet_started_can_be_withdrawn() -> None:
    stones = MemoryTombstones(ttl_s=60.0)
    await stones.record(Tombstone("r-1", cancelled_at=0.0))

    assert await Cancellation("r-1", tombstones=stones).withdrawn() is True
    redelivered = Cancellation("r-1", withdrawable=False, tombstones=stones)
    assert await redelivered.withdrawn() is False  # its contact may exist: found, then stopped
    assert await redelivered.cancelled() is True
    assert redelivered.tombstone is not None
    started = Cancellation("r-1", tombstones=stones)
    started.started("c-1")
    assert await started.withdrawn() is False
    assert await Cancellation("r-2", tombstones=stones).withdrawn() is False


# -- before the start --------------------------------------------------------------------------


async def test_a_tombstone_found_before_the_start_ends_the_request_without_a_contact(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator()
    stones = MemoryTombstones(ttl_s=60.0)
    await stones.record(Tombstone("early-1", cancelled_at=1_800_000_000.0))
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink)
    started: list[bool] = []

    final = await engine.run(
        call_request("early-1"),
        cancellation=Cancellation("early-1", tombstones=stones),
        on_started=lambda: started.append(True),
    )

    assert types_of(sink.events) == [EventType.RECEIVED, EventType.CANCELLED]
    assert final.data == {
        "stage": "before_start",
        "contact_stopped": False,
        "cancelled_at": "2027-01-15T08:00:00.000Z",
    }
    assert final.contact_id is None
    assert started == [True]  # the message no longer counts as waiting to start
    assert (await EmulatorControl(emulator.url).op_stats(START))["calls"] == 0
    assert engine.metrics.value("orchestrator_requests_total", {"outcome": "request.cancelled"})


async def test_a_cancel_ends_the_wait_for_the_start_budget(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(60.0, 60.0))
    # One start token, and none after it for a long while; the watch's own calls unhampered.
    budget = RateBudget({**DEFAULT_QUOTAS, Operation.START_WEBRTC_CONTACT: Quota(0.001, 2.0)})
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink, budget=budget)
    bucket = budget[Operation.START_WEBRTC_CONTACT]
    counted = Counted()
    cancellation = Cancellation("budget-2", count=counted)
    finals: list[LifecycleEvent] = []

    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run, call_request("budget-1"))  # spends the only token
        await eventually(lambda: started_contact(sink.events, "budget-1"))

        async def second() -> None:
            finals.append(await engine.run(call_request("budget-2"), cancellation=cancellation))

        tg.start_soon(second)
        await eventually(lambda: bucket.waiting == 1, message="the second start to wait")
        cancellation.request(counted=True)
        await eventually(lambda: finals)
        tg.cancel_scope.cancel()

    assert finals[0].type is EventType.CANCELLED
    assert finals[0].data["stage"] == "before_start"
    assert bucket.waiting == 0
    assert counted.results == [CancelResult.CANCELLED]
    assert (await EmulatorControl(emulator.url).op_stats(START))["successes"] == 1


async def test_a_cancel_ends_the_wait_at_the_capacity_gate(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(
        agent_delay_s=(60.0, 60.0), max_concurrent_calls=1, quotas_enabled=False
    )
    gate = CapacityGate(first_probe_s=30.0, max_probe_s=30.0)
    gateway = AioConnectGateway(
        await client_for(emulator),
        RateBudget(),
        policies=GatewayPolicies(capacity_max_wait_s=60.0),
        capacity=gate,
        metrics=(metrics := Metrics()),
    )
    engine = LifecycleEngine(gateway=gateway, sink=MemorySink(), metrics=metrics)
    cancellation = Cancellation("capacity-2")
    finals: list[LifecycleEvent] = []

    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run, call_request("capacity-1"))  # takes the only call

        async def second() -> None:
            finals.append(await engine.run(call_request("capacity-2"), cancellation=cancellation))

        tg.start_soon(second)
        await eventually(lambda: gate.blocked and gate.waiting == 1, message="a wait at the gate")
        cancellation.request()
        await eventually(lambda: finals)
        tg.cancel_scope.cancel()

    assert (finals[0].type, finals[0].data["stage"]) == (EventType.CANCELLED, "before_start")
    stats = await EmulatorControl(emulator.url).op_stats(START)
    assert (stats["successes"], stats["concurrency_limited"]) == (1, 1)  # no attempt after it


# -- after the start -----------------------------------------------------------------------------


async def test_a_cancel_while_the_contact_waits_stops_it_and_ends_the_request_cancelled(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(60.0, 60.0))
    counted = Counted()
    cancellation = Cancellation("queued-1", count=counted)
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink)
    finals: list[LifecycleEvent] = []

    async with anyio.create_task_group() as tg:

        async def run() -> None:
            finals.append(await engine.run(call_request("queued-1"), cancellation=cancellation))

        tg.start_soon(run)
        await eventually(lambda: started_contact(sink.events, "queued-1"))
        cancellation.request(Tombstone("queued-1", cancelled_at=1_800_000_000.0), counted=True)
        await eventually(lambda: finals)

    final = finals[0]
    assert final.type is EventType.CANCELLED
    assert final.data == {
        "stage": "waiting_for_agent",
        "contact_stopped": True,
        "cancelled_at": "2027-01-15T08:00:00.000Z",
    }
    assert EventType.DISCONNECTED not in types_of(sink.events)
    assert final.contact_id is not None
    truth = await EmulatorControl(emulator.url).contact(final.contact_id)
    assert (truth["DisconnectReason"], truth["ConnectedToAgentAt"]) == ("API", None)
    assert counted.results == [CancelResult.CANCELLED]
    labels = {"reason": "cancelled", "result": "stopped"}
    assert engine.metrics.value("orchestrator_contacts_stopped_total", labels) == 1


async def test_a_cancel_once_an_agent_has_the_contact_changes_nothing(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator()
    counted = Counted()
    cancellation = Cancellation("connected-1", count=counted)

    async def cancel(event: LifecycleEvent) -> None:
        del event
        cancellation.request(counted=True)

    sink = MemorySink()
    engine = make_engine(
        await client_for(emulator), HookSink(sink, EventType.AGENT_CONNECTED, cancel)
    )

    final = await engine.run(call_request("connected-1"), cancellation=cancellation)

    assert final.type is EventType.SCREEN_SHARING_STARTED
    assert counted.results == [CancelResult.TOO_LATE]
    assert (await EmulatorControl(emulator.url).op_stats("StopContact"))["calls"] == 0


async def test_a_cancel_that_finds_an_agent_on_the_contact_does_not_stop_it(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(60.0, 60.0))
    control = EmulatorControl(emulator.url)
    counted = Counted()
    cancellation = Cancellation("raced-1", count=counted)
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink)
    finals: list[LifecycleEvent] = []

    async with anyio.create_task_group() as tg:

        async def run() -> None:
            finals.append(await engine.run(call_request("raced-1"), cancellation=cancellation))

        tg.start_soon(run)
        contact_id = await eventually(lambda: started_contact(sink.events, "raced-1"))
        await control.connect_agent(contact_id)  # between the watch's polls
        cancellation.request(counted=True)
        await eventually(lambda: finals)

    assert finals[0].type is EventType.SCREEN_SHARING_STARTED
    assert counted.results == [CancelResult.TOO_LATE]
    assert await control.stopped_with_agent() == []
    assert (await control.op_stats("StopContact"))["calls"] == 0
