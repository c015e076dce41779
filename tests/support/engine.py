"""Helpers of the engine tests: an engine wired as the daemon wires it, a hook in the event
stream, parsed requests, and what the events say."""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from orchestrator.clock import Clock, SystemClock
from orchestrator.connect.gateway import AioConnectGateway, GatewayPolicies
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.engine.doorbells import ContactNotifier, EarlyEvents
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.lifecycle import LifecycleEngine
from orchestrator.engine.queue_position import PositionPolicy, QueuePositions
from orchestrator.engine.request import CallRequest, parse_request
from orchestrator.engine.watch import WatchPolicy
from orchestrator.metrics import Metrics
from orchestrator.sinks import EventSink
from orchestrator.testing.requests import request_document
from orchestrator.testing.waiting import eventually

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient

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
    positions: PositionPolicy | None = None,
) -> LifecycleEngine:
    """An engine wired as the daemon wires it, on `clock` (real time by default); with
    `positions`, its queue-position service (whose `run` the test starts) too."""
    clk = clock or SystemClock()
    metrics = Metrics()
    gateway = AioConnectGateway(
        client, budget or RateBudget(clock=clk), metrics=metrics, policies=policies, clock=clk
    )
    notifier = ContactNotifier(early=EarlyEvents(metrics, clock=clk))
    return LifecycleEngine(
        gateway=gateway,
        sink=sink,
        watch=watch,
        clock=clk,
        notifier=notifier,
        metrics=metrics,
        rng=random.Random(seed),
        positions=None
        if positions is None
        else QueuePositions(gateway, notifier.frontier, positions, clk),
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


class HeldSink:
    """Holds every delivery holding an event of type `hold` until `release` is set, then
    delivers it to `inner` (a slow sink, at the exact event a test wants slow). `held` is set
    once such a delivery waits."""

    name = "held"

    def __init__(self, inner: EventSink, hold: EventType) -> None:
        self.inner = inner
        self.hold = hold
        self.held = anyio.Event()
        self.release = anyio.Event()

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        if any(e.type is self.hold for e in events):
            self.held.set()
            await self.release.wait()
        await self.inner.publish(events)


def call_request(request_id: str, **overrides: Any) -> CallRequest:
    """`request_document` parsed, as the worker hands it to the engine."""
    return parse_request(json.dumps(request_document(request_id, **overrides)))


def types_of(events: Sequence[LifecycleEvent], request_id: str | None = None) -> list[EventType]:
    return [e.type for e in events if request_id is None or e.request_id == request_id]


def finals(events: Sequence[LifecycleEvent]) -> list[LifecycleEvent]:
    """The final events, in order (see `orchestrator.testing.final_types` for them by request)."""
    return [e for e in events if e.final]


def started_contact(events: Sequence[LifecycleEvent], request_id: str) -> str | None:
    """The contact id of `request_id`'s `contact.started` event, None before it went out."""
    return next(
        (
            e.contact_id
            for e in events
            if e.type is EventType.STARTED and e.request_id == request_id
        ),
        None,
    )


def polls_by_request(events: Sequence[LifecycleEvent]) -> dict[str, int]:
    """DescribeContact polls each request's watch made until its agent connected."""
    return {e.request_id: e.data["polls"] for e in events if e.type is EventType.AGENT_CONNECTED}


async def settle(condition: Callable[[], bool], *, within_s: float = 5.0) -> None:
    """`eventually`, checked every millisecond: for conditions a few checkpoints away."""
    await eventually(condition, within=within_s, interval=0.001)
