"""`request.received` goes out while the start call is out, against the emulator over HTTP: the
start does not wait for it, every later event of the request does (each sink gets them in order),
a failing start never cancels it, and a failure to deliver it is raised as before."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio
import pytest

from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.errors import SinkError
from orchestrator.metrics import Metrics
from orchestrator.sinks import FanoutSink, MemorySink
from orchestrator.sinks.base import sink_policy
from orchestrator.testing.emulator import Emulator, EmulatorControl
from orchestrator.testing.waiting import eventually
from tests.support.engine import HeldSink, call_request, make_engine, types_of
from tests.support.peers import ClientFactory

Starter = Callable[..., Any]

ORDER = [
    EventType.RECEIVED,
    EventType.STARTED,
    EventType.AGENT_CONNECTED,
    EventType.SCREEN_SHARING_STARTED,
]


async def contacts(control: EmulatorControl) -> int:
    return int((await control.stats())["contacts"])


async def refused_starts(control: EmulatorControl) -> int:
    return (await control.op_stats("StartWebRTCContact"))["client_errors"]


def fanout(*sinks: Any) -> FanoutSink:
    policy = sink_policy("test", max_attempts=1, max_time_s=1.0, max_backoff_s=0.1)
    return FanoutSink(list(sinks), metrics=Metrics(), policy=policy)


async def test_the_start_goes_while_request_received_is_held_and_every_sink_gets_it_first(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator()
    control = EmulatorControl(emulator.url)
    slow, fast = MemorySink(), MemorySink()
    held = HeldSink(slow, EventType.RECEIVED)
    engine = make_engine(await client_for(emulator), fanout(held, fast))
    finals: list[LifecycleEvent] = []
    over: list[str] = []

    async with anyio.create_task_group() as tg:

        async def run() -> None:
            request = call_request("overlap-1")
            finals.append(await engine.run(request, on_started=lambda: over.append("started")))

        tg.start_soon(run)
        await eventually(held.held.is_set, within=10, message="request.received held")
        # The contact is started while request.received is still on its way to a sink...
        await eventually(lambda: contacts(control), within=10, message="the contact started")
        # ...and nothing after it reaches any sink before it reached every sink.
        assert types_of(fast.events) == [EventType.RECEIVED]
        assert slow.events == []
        assert finals == []
        # For admission the start is over only once request.received is out too.
        assert over == []
        held.release.set()

    assert [e.type for e in finals] == [EventType.SCREEN_SHARING_STARTED]
    assert over == ["started"]
    assert types_of(slow.events) == ORDER
    assert types_of(fast.events) == ORDER


async def test_a_start_that_fails_while_request_received_is_held_delivers_both_in_order(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(instance_ids=frozenset({"another-instance"}))
    control = EmulatorControl(emulator.url)
    sink = MemorySink()
    held = HeldSink(sink, EventType.RECEIVED)
    engine = make_engine(await client_for(emulator), held)
    finals: list[LifecycleEvent] = []

    async with anyio.create_task_group() as tg:

        async def run() -> None:
            finals.append(await engine.run(call_request("lost-1")))

        tg.start_soon(run)
        await eventually(lambda: refused_starts(control), within=10, message="start refused")
        # The refusal waits for request.received: nothing is delivered, nothing is final yet.
        assert held.held.is_set()
        assert sink.events == []
        assert finals == []
        held.release.set()

    assert [e.type for e in finals] == [EventType.FAILED]
    assert types_of(sink.events) == [EventType.RECEIVED, EventType.FAILED]
    assert (await control.op_stats("StartWebRTCContact"))["client_errors"] == 1


async def test_request_received_that_no_sink_takes_is_raised_and_a_retry_finds_the_same_contact(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator()
    control = EmulatorControl(emulator.url)
    down, other = DownOn(EventType.RECEIVED), MemorySink()
    engine = make_engine(await client_for(emulator), fanout(down, other))
    request = call_request("down-1")

    with pytest.raises(SinkError, match="sink down failed"):
        await engine.run(request)

    # The start went ahead meanwhile; no later event went anywhere.
    assert types_of(other.events) == [EventType.RECEIVED]
    # The worker retries in place without announcing again: the same contact, started once.
    final = await engine.run(request, announce=False)
    assert final.type is EventType.SCREEN_SHARING_STARTED
    assert types_of(other.events) == ORDER
    assert (await control.stats())["contacts"] == 1


class DownOn:
    """A sink that refuses every delivery holding an event of type `kind` (a sink outage)."""

    name = "down"

    def __init__(self, kind: EventType) -> None:
        self.kind = kind

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        if any(e.type is self.kind for e in events):
            raise SinkError(f"{self.kind.value} refused")
