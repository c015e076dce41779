"""At-least-once delivery: a redelivered request resumes its contact; cancellation emits nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.lifecycle import LifecycleEngine
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from tests.support import eventually
from tests.support.engine import call_request, finals, make_engine, types_of
from tests.support.peers import ClientFactory

Starter = Callable[..., Any]


async def started_in(sink: MemorySink) -> LifecycleEvent | None:
    return next((e for e in sink.events if e.type is EventType.STARTED), None)


async def test_redelivered_request_after_completion_resumes_the_same_contact(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator()
    client = await client_for(emulator)
    first_sink, second_sink = MemorySink(), MemorySink()
    request = call_request("again-1")

    first = await make_engine(client, first_sink).run(request)
    second = await make_engine(client, second_sink, seed=1).run(request)

    assert first.type is second.type is EventType.SCREEN_SHARING_STARTED
    assert first.id == second.id == "again-1:screen_sharing.started"
    assert first.contact_id == second.contact_id is not None
    assert types_of(first_sink.events) == types_of(second_sink.events)
    control = EmulatorControl(emulator.url)
    (contact,) = await control.contacts()
    assert contact["ContactId"] == first.contact_id
    assert contact["ScreenSharingStarts"] == 1
    # The second StartScreenSharing was an idempotent replay of the first (same ClientToken).
    assert (await control.op_stats("StartScreenSharing"))["successes"] == 2


async def test_redelivery_while_the_first_run_still_watches_resumes_the_same_contact(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    # Agents never answer by themselves: the test connects one once both runs watch.
    emulator: Emulator = await start_emulator(agent_delay_s=(60.0, 60.0))
    client = await client_for(emulator)
    control = EmulatorControl(emulator.url)
    sinks = [MemorySink(), MemorySink()]
    engines = [make_engine(client, sink, seed=index) for index, sink in enumerate(sinks)]
    request = call_request("twice-1")
    results: dict[int, LifecycleEvent] = {}

    async def run(index: int) -> None:
        results[index] = await engines[index].run(request)

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, 0)
            first_started = await eventually(lambda: started_in(sinks[0]))
            tg.start_soon(run, 1)
            second_started = await eventually(lambda: started_in(sinks[1]))
            assert second_started.contact_id == first_started.contact_id is not None
            assert results == {}
            await control.connect_agent(first_started.contact_id)

    assert results[0].type is results[1].type is EventType.SCREEN_SHARING_STARTED
    assert results[0].contact_id == results[1].contact_id == first_started.contact_id
    (contact,) = await control.contacts()
    assert contact["ScreenSharingStarts"] == 1
    for sink in sinks:
        assert len(finals(sink.events)) == 1


async def test_cancellation_mid_watch_propagates_and_emits_no_final_event(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(60.0, 60.0))
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink)
    seen: list[type[BaseException]] = []

    async def run() -> None:
        try:
            await engine.run(call_request("stop-1"))
        except BaseException as exc:
            seen.append(type(exc))
            raise

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            started = await eventually(lambda: started_in(sink))
            await eventually(lambda: describe_calls(emulator))  # the watch is under way
            tg.cancel_scope.cancel()

    assert tg.cancel_scope.cancelled_caught
    assert seen == [anyio.get_cancelled_exc_class()]
    assert types_of(sink.events) == [EventType.RECEIVED, EventType.STARTED]
    assert len(engine.notifier) == 0  # the watch unsubscribed on its way out
    assert engine.metrics.value("orchestrator_requests_total", {"outcome": "request.failed"}) == 0
    assert started.contact_id is not None
    contact = await EmulatorControl(emulator.url).contact(started.contact_id)
    assert contact["State"] == "QUEUED"  # the call itself is left alone, for the redelivery


async def test_cancel_scope_deadline_around_run_cancels_cleanly(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(60.0, 60.0))
    sink = MemorySink()
    engine: LifecycleEngine = make_engine(await client_for(emulator), sink)

    with anyio.move_on_after(0.5) as scope:
        await engine.run(call_request("stop-2"))

    assert scope.cancelled_caught
    assert finals(sink.events) == []
    assert EventType.STARTED in types_of(sink.events)


async def describe_calls(emulator: Emulator) -> int:
    return (await EmulatorControl(emulator.url).op_stats("DescribeContact"))["calls"]
