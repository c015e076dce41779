"""`request.waiting`: a request that cannot start at once says why (the concurrent-call cap, the
start rate), once per reason, before its contact starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from orchestrator.connect.gateway import AioConnectGateway
from orchestrator.connect.operations import DEFAULT_QUOTAS, Operation, Quota
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from orchestrator.testing.waiting import eventually
from tests.support.engine import call_request, make_engine, types_of
from tests.support.peers import ClientFactory

Starter = Callable[..., Any]


def waiting_events(events: list[LifecycleEvent], request_id: str) -> list[LifecycleEvent]:
    return [e for e in events if e.type is EventType.WAITING and e.request_id == request_id]


async def test_a_request_behind_the_call_cap_says_it_waits_for_capacity_once(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(max_concurrent_calls=1, talk_time_s=(600.0, 600.0))
    control = EmulatorControl(emulator.url)
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink)
    await engine.run(call_request("cap-first"))  # its call goes on: the cap is reached

    async with anyio.create_task_group() as tg:
        tg.start_soon(engine.run, call_request("cap-second"))
        await eventually(lambda: waiting_events(sink.events, "cap-second"), within=30)
        # A few refused probes later, still one event; then the first call ends.
        gateway = engine.gateway
        assert isinstance(gateway, AioConnectGateway)
        await eventually(lambda: gateway.capacity.refusals >= 3, within=30)
        first = next(e.contact_id for e in sink.events if e.type is EventType.STARTED)
        await control.disconnect(first or "")

    told = waiting_events(sink.events, "cap-second")
    assert len(told) == 1
    assert told[0].data == {"reason": "capacity", "estimated_start_s": None}
    assert told[0].id == "cap-second:request.waiting:capacity"
    assert not told[0].final
    assert types_of(sink.events, "cap-second")[:3] == [
        EventType.RECEIVED,
        EventType.WAITING,
        EventType.STARTED,
    ]
    assert not waiting_events(sink.events, "cap-first")


async def test_requests_behind_the_start_rate_say_so_with_an_estimate(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    # One start every 2 s, no burst to speak of: the second and third wait.
    emulator: Emulator = await start_emulator(quotas_enabled=False)
    sink = MemorySink()
    budget = RateBudget(
        {**DEFAULT_QUOTAS, Operation.START_WEBRTC_CONTACT: Quota(0.5, 1.0)}, headroom=0
    )
    engine = make_engine(await client_for(emulator), sink, budget=budget)
    ids = ["rate-0", "rate-1", "rate-2"]

    async def run(index: int) -> None:
        await engine.run(call_request(ids[index]), priority=float(index))

    async with anyio.create_task_group() as tg:
        for index in range(len(ids)):
            tg.start_soon(run, index)

    assert not waiting_events(sink.events, "rate-0")
    estimates = []
    for rid in ids[1:]:
        told = waiting_events(sink.events, rid)
        assert [e.data["reason"] for e in told] == ["start_rate"]
        assert types_of(sink.events, rid)[:3] == [
            EventType.RECEIVED,
            EventType.WAITING,
            EventType.STARTED,
        ]
        estimates.append(told[0].data["estimated_start_s"])
    # The third waits behind the second: its estimate is later.
    assert 0 < estimates[0] < estimates[1]
    assert {e.type for e in sink.events if e.final} == {EventType.SCREEN_SHARING_STARTED}
