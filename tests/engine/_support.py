"""Helpers of the engine tests: requests, the emulator's control API, waiting, a stepping clock."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.lowlevel

from orchestrator.clock import Clock, SystemClock
from orchestrator.connect.gateway import AioConnectGateway, GatewayPolicies
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.lifecycle import LifecycleEngine
from orchestrator.engine.request import CallRequest, parse_request
from orchestrator.engine.watch import WatchPolicy
from orchestrator.sinks import EventSink
from tests.conftest import FLOW_ID, INSTANCE_ID

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient

T = TypeVar("T")

#: Both sides may send video and share their screen.
SCREEN_SHARE_BOTH: dict[str, Any] = {
    "Customer": {"Video": "SEND", "ScreenShare": "SEND"},
    "Agent": {"Video": "SEND", "ScreenShare": "SEND"},
}


#: A watch for real-time tests against the fast emulator (agents answer within ~0.15 s).
FAST_WATCH = WatchPolicy(
    first_delay_s=0.05, multiplier=1.5, max_interval_s=0.25, max_wait_s=30.0, jitter=0.25
)


def make_engine(
    client: ConnectClient,
    sink: EventSink,
    *,
    clock: Clock | None = None,
    watch: WatchPolicy = FAST_WATCH,
    policies: GatewayPolicies | None = None,
    budget: RateBudget | None = None,
    seed: int = 0,
) -> LifecycleEngine:
    """An engine wired as the daemon wires it, on `clock` (real time by default)."""
    clk = clock or SystemClock()
    gateway = AioConnectGateway(
        client, budget or RateBudget(clock=clk), policies=policies, clock=clk
    )
    return LifecycleEngine(
        gateway=gateway, sink=sink, watch=watch, clock=clk, rng=random.Random(seed)
    )


class HookSink:
    """Delivers to `inner`, then runs `action` once an event of type `on` went out.

    Lets a test change the world at an exact point of the lifecycle (say, right after
    `contact.started`) without reaching into the engine.
    """

    name = "hook"

    def __init__(
        self, inner: EventSink, on: EventType, action: Callable[[LifecycleEvent], Awaitable[Any]]
    ) -> None:
        self.inner = inner
        self.on = on
        self.action = action

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        await self.inner.publish(events)
        for event in events:
            if event.type is self.on:
                await self.action(event)


def request_body(request_id: str, **extra: Any) -> dict[str, Any]:
    """A valid call request document (PascalCase, as it arrives on the queue)."""
    body: dict[str, Any] = {
        "RequestId": request_id,
        "InstanceId": INSTANCE_ID,
        "ContactFlowId": FLOW_ID,
        "ParticipantDetails": {"DisplayName": "Jane"},
        "AllowedCapabilities": SCREEN_SHARE_BOTH,
    }
    body.update(extra)
    return body


def call_request(request_id: str, **extra: Any) -> CallRequest:
    return parse_request(json.dumps(request_body(request_id, **extra)))


def types_of(events: Sequence[LifecycleEvent], request_id: str | None = None) -> list[EventType]:
    return [e.type for e in events if request_id is None or e.request_id == request_id]


def finals(events: Sequence[LifecycleEvent]) -> list[LifecycleEvent]:
    return [e for e in events if e.final]


class SteppingClock:
    """A clock that moves only when the test calls `advance`; sleepers wait for it (or `wake`).

    Unlike `tests.clock.VirtualClock`, a sleep here really blocks, so a test can act while the
    code under test sleeps (ring a doorbell, line up waiters) and then move time on purpose.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._start = start
        self._now = start
        self._moved = anyio.Event()
        #: How many sleeps are in progress now.
        self.sleeping = 0

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._now - self._start

    def advance(self, seconds: float) -> None:
        self._now += seconds
        moved, self._moved = self._moved, anyio.Event()
        moved.set()

    async def sleep(self, seconds: float, wake: anyio.Event | None = None) -> None:
        until = self._now + max(0.0, seconds)
        self.sleeping += 1
        try:
            await anyio.lowlevel.checkpoint()
            while self._now < until and not (wake is not None and wake.is_set()):
                await _first_of(self._moved, wake)
        finally:
            self.sleeping -= 1


async def _first_of(*events: anyio.Event | None) -> None:
    """Wait until any of `events` is set."""
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            if event is not None:
                tg.start_soon(wait, event)


async def settle(condition: Callable[[], bool], *, within_s: float = 5.0) -> None:
    """Let other tasks run until `condition()` holds (checked between checkpoints)."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {within_s} s")
        await anyio.sleep(0.001)
