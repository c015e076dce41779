"""Injected faults: 5xx, lost responses, eventual consistency and the concurrent-call cap."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import anyio

from orchestrator.connect.gateway import GatewayPolicies
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.lifecycle import LifecycleEngine
from orchestrator.engine.request import client_token
from orchestrator.engine.watch import WatchPolicy
from orchestrator.errors import CapacityError, RetryableConnectError
from orchestrator.retry import RetryPolicy
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from tests.support.clock import VirtualClock
from tests.support.engine import call_request, finals, make_engine, types_of
from tests.support.peers import ClientFactory, VirtualEmulatorFactory

Starter = Callable[..., Any]


def patient_policies(
    seed: int = 0, initial_s: float = 0.02, max_backoff_s: float = 0.1, **capacity: float
) -> GatewayPolicies:
    """Many quick, seeded retries: faults at these rates never exhaust them."""

    def policy(name: str, *retry_on: type[BaseException]) -> RetryPolicy:
        return RetryPolicy(
            name,
            retry_on=retry_on,
            max_attempts=12,
            initial_s=initial_s,
            max_backoff_s=max_backoff_s,
            rng=random.Random(seed),
            **capacity,
        )

    return GatewayPolicies(
        start=policy("connect.start", RetryableConnectError, CapacityError),
        describe=policy("connect.describe", RetryableConnectError),
        screen_sharing=policy("connect.screen_sharing", RetryableConnectError),
    )


async def run_all(engine: LifecycleEngine, request_ids: list[str]) -> dict[str, LifecycleEvent]:
    results: dict[str, LifecycleEvent] = {}

    async def run(request_id: str) -> None:
        results[request_id] = await engine.run(call_request(request_id))

    async with anyio.create_task_group() as tg:
        for request_id in request_ids:
            tg.start_soon(run, request_id)
    return results


async def test_lost_responses_are_retried_and_leave_exactly_one_contact(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    # One sequential lifecycle draws the emulator's fault dice in a fixed order: with this seed
    # the first StartWebRTCContact takes effect and its response is lost.
    emulator: Emulator = await start_emulator(drop_rate=0.5, seed=3)
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink, policies=patient_policies())

    final = await engine.run(call_request("lost-1"))

    assert final.type is EventType.SCREEN_SHARING_STARTED
    control = EmulatorControl(emulator.url)
    assert (await control.op_stats("StartWebRTCContact"))["dropped"] >= 1
    (contact,) = await control.contacts()
    assert contact["ContactId"] == final.contact_id
    assert contact["ScreenSharingStarts"] == 1
    assert len(finals(sink.events)) == 1


async def test_faults_and_lost_responses_under_load_keep_one_contact_per_request(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(
        error_rate=0.25, drop_rate=0.2, quotas_enabled=False, seed=5
    )
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink, policies=patient_policies(seed=1))
    request_ids = [f"faulty-{index}" for index in range(8)]

    with anyio.fail_after(20):
        results = await run_all(engine, request_ids)

    assert {r.type for r in results.values()} == {EventType.SCREEN_SHARING_STARTED}
    control = EmulatorControl(emulator.url)
    contacts = await control.contacts()
    by_token = {c["ClientToken"]: c for c in contacts}
    assert len(contacts) == len(by_token) == len(request_ids)
    for request_id in request_ids:
        contact = by_token[client_token(request_id, "start")]
        assert contact["ContactId"] == results[request_id].contact_id
        assert contact["ScreenSharingStarts"] == 1
    operations = (await control.stats())["operations"]
    assert sum(op["faults"] - op["dropped"] for op in operations.values()) > 0  # 5xx answers
    assert sum(op["dropped"] for op in operations.values()) > 0
    assert len(finals(sink.events)) == len(request_ids)


async def test_early_not_found_right_after_start_is_retried(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(consistency_delay_s=0.3)
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink, policies=patient_policies())

    final = await engine.run(call_request("fresh-1"))

    assert final.type is EventType.SCREEN_SHARING_STARTED
    assert types_of(sink.events)[:3] == [
        EventType.RECEIVED,
        EventType.STARTED,
        EventType.AGENT_CONNECTED,
    ]
    assert (await EmulatorControl(emulator.url).op_stats("DescribeContact"))["client_errors"] >= 1


async def test_requests_over_the_concurrent_call_cap_wait_for_calls_to_end(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(
        max_concurrent_calls=2,
        agent_delay_s=(0.1, 0.1),
        talk_time_s=(0.6, 0.6),
        quotas_enabled=False,
    )
    sink = MemorySink()
    policies = patient_policies(
        capacity_initial_s=0.1, capacity_max_backoff_s=0.3, capacity_max_time_s=10.0
    )
    engine = make_engine(await client_for(emulator), sink, policies=policies)

    with anyio.fail_after(15):
        results = await run_all(engine, [f"busy-{index}" for index in range(4)])

    # Every call got its agent; on a loaded machine a short call may be over before screen
    # sharing goes, and that skip names the ended call.
    connected = {e.request_id for e in sink.events if e.type is EventType.AGENT_CONNECTED}
    assert connected == set(results) == {f"busy-{index}" for index in range(4)}
    assert {(r.type, r.data.get("reason")) for r in results.values()} <= {
        (EventType.SCREEN_SHARING_STARTED, None),
        (EventType.SCREEN_SHARING_SKIPPED, "contact_ended"),
    }
    control = EmulatorControl(emulator.url)
    assert (await control.op_stats("StartWebRTCContact"))["concurrency_limited"] >= 2
    contacts = await control.contacts()
    assert len(contacts) == 4
    for contact in contacts:
        # Never more than two calls at once: each contact began with at most one other active.
        others_active = [
            other
            for other in contacts
            if other is not contact
            and other["CreatedAt"] < contact["CreatedAt"]
            and (other["DisconnectedAt"] is None or other["DisconnectedAt"] > contact["CreatedAt"])
        ]
        assert len(others_active) <= 1


async def test_consistency_window_counts_from_the_contacts_creation_not_the_first_attempt(
    start_virtual_emulator: VirtualEmulatorFactory,
    client_for: ClientFactory,
    vclock: VirtualClock,
) -> None:
    # One call slot, taken by a call that ends 25 s from now; ours waits for it (capacity
    # backoff, longer than the 10 s consistency window), then its first poll meets an early 404.
    emulator = await start_virtual_emulator(
        max_concurrent_calls=1,
        agent_delay_s=(5.0, 5.0),
        talk_time_s=(20.0, 20.0),
        consistency_delay_s=2.0,
    )
    client = await client_for(emulator)
    occupant = call_request("occupant-1")
    await client.start_web_rtc_contact(
        **occupant.start_webrtc_contact_params(client_token("occupant-1", "start"))
    )
    sink = MemorySink()
    watch = WatchPolicy(
        queue_aware=False, first_delay_s=1, max_interval_s=5, max_wait_s=600, jitter=0
    )
    # Virtual time: the early 404s last 2 s, so the describe retries may wait seconds.
    policies = patient_policies(initial_s=0.5, max_backoff_s=2.0)
    engine = make_engine(client, sink, clock=vclock, watch=watch, policies=policies)

    final = await engine.run(call_request("waiting-1"))

    assert final.type is EventType.SCREEN_SHARING_STARTED, final.data
    control = EmulatorControl(emulator.url)
    assert (await control.op_stats("StartWebRTCContact"))["concurrency_limited"] >= 1
    assert (await control.op_stats("DescribeContact"))["client_errors"] >= 1
    contacts = await control.contacts()
    ours = next(c for c in contacts if c["ContactId"] == final.contact_id)
    occupant_contact = next(c for c in contacts if c["ContactId"] != final.contact_id)
    assert ours["CreatedAt"] >= occupant_contact["DisconnectedAt"]
    assert ours["CreatedAt"] - occupant_contact["CreatedAt"] > 10.0  # longer than the window
