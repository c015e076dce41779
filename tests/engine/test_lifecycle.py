"""The contact lifecycle over real HTTP against the emulator: outcomes, events, errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.connect.gateway import GatewayPolicies
from orchestrator.engine.events import EventType
from orchestrator.engine.request import client_token
from orchestrator.errors import RetryableConnectError, RetryLater
from orchestrator.retry import RetryPolicy
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from tests.support.engine import (
    HookSink,
    call_request,
    finals,
    make_engine,
    types_of,
)
from tests.support.peers import ClientFactory

Starter = Callable[..., Any]


async def test_happy_path_ends_with_screen_sharing_started_after_events_in_order(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator()
    sink = MemorySink(include_connection_data=True)
    engine = make_engine(await client_for(emulator), sink)

    final = await engine.run(call_request("happy-1"))

    order = [
        EventType.RECEIVED,
        EventType.STARTED,
        EventType.AGENT_CONNECTED,
        EventType.SCREEN_SHARING_STARTED,
    ]
    assert types_of(sink.events) == order
    assert finals(sink.events) == [final]
    assert final.type is EventType.SCREEN_SHARING_STARTED
    assert [e.id for e in sink.events] == [f"happy-1:{t.value}" for t in order]
    contact_id = final.contact_id
    assert contact_id is not None
    assert [e.contact_id for e in sink.events] == [None, contact_id, contact_id, contact_id]
    truth = await EmulatorControl(emulator.url).contact(contact_id)
    assert truth["ScreenSharingStarts"] == 1
    assert truth["ClientToken"] == client_token("happy-1", "start")
    connected = sink.events[2]
    assert connected.data["agent_id"] == truth["AgentId"]
    assert connected.data["waited_s"] == pytest.approx(
        truth["ConnectedToAgentAt"] - truth["CreatedAt"], abs=0.002
    )
    outcome = {"outcome": "screen_sharing.started"}
    assert engine.metrics.value("orchestrator_requests_total", outcome) == 1


async def test_contact_started_carries_connection_data_only_for_sinks_that_opt_in(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator()
    sink = MemorySink(include_connection_data=True)

    await make_engine(await client_for(emulator), sink).run(call_request("data-1"))

    started = next(e for e in sink.events if e.type is EventType.STARTED)
    public = started.to_dict()
    private = started.to_dict(include_connection_data=True)
    assert set(public["data"]) == {"ContactId", "ParticipantId"}
    assert private["data"]["ContactId"] == started.contact_id
    assert len(private["data"]["ParticipantToken"]) > 100
    connection = private["data"]["ConnectionData"]
    assert connection["Meeting"]["MeetingId"]
    assert connection["Meeting"]["MediaPlacement"]["SignalingUrl"].startswith("wss://")
    assert connection["Attendee"]["AttendeeId"]
    assert len(connection["Attendee"]["JoinToken"]) > 32
    # No other event carries secrets.
    assert [e.type for e in sink.events if e.has_secrets] == [EventType.STARTED]


async def test_screen_sharing_not_requested_is_skipped_without_calling_connect(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator()
    sink = MemorySink()

    final = await make_engine(await client_for(emulator), sink).run(
        call_request("no-share-1", ScreenSharing=False)
    )

    assert final.type is EventType.SCREEN_SHARING_SKIPPED
    assert final.data == {"reason": "not_requested"}
    assert EventType.AGENT_CONNECTED in types_of(sink.events)
    assert (await EmulatorControl(emulator.url).op_stats("StartScreenSharing"))["calls"] == 0


@pytest.mark.parametrize(
    ("capabilities", "sides"),
    [
        ({}, ["Customer", "Agent"]),
        ({"Customer": {"Video": "SEND"}, "Agent": {"ScreenShare": "SEND"}}, ["Customer"]),
        ({"Customer": {"ScreenShare": "SEND"}, "Agent": {"Video": "SEND"}}, ["Agent"]),
    ],
)
async def test_screen_sharing_without_the_capability_is_skipped_naming_the_sides(
    start_emulator: Starter,
    client_for: ClientFactory,
    capabilities: dict[str, Any] | None,
    sides: list[str],
) -> None:
    emulator: Emulator = await start_emulator()
    sink = MemorySink()
    request = call_request("cap-1", AllowedCapabilities=capabilities)

    final = await make_engine(await client_for(emulator), sink).run(request)

    assert final.type is EventType.SCREEN_SHARING_SKIPPED
    assert final.data == {"reason": "capability_not_allowed", "sides": sides}
    assert (await EmulatorControl(emulator.url).op_stats("StartScreenSharing"))["calls"] == 0


async def test_customer_who_abandons_ends_with_contact_disconnected(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(abandon_rate=1.0)
    sink = MemorySink()

    final = await make_engine(await client_for(emulator), sink).run(call_request("gone-1"))

    assert types_of(sink.events) == [
        EventType.RECEIVED,
        EventType.STARTED,
        EventType.DISCONNECTED,
    ]
    assert final.data["reason"] == "CUSTOMER_DISCONNECT"
    assert final.data["disconnected_at"].endswith("Z")
    assert (await EmulatorControl(emulator.url).op_stats("StartScreenSharing"))["calls"] == 0


@pytest.mark.parametrize("final_attempt", [True, False])
async def test_unknown_instance_fails_naming_the_aws_error_code(
    start_emulator: Starter, client_for: ClientFactory, final_attempt: bool
) -> None:
    emulator: Emulator = await start_emulator(instance_ids=frozenset({"another-instance"}))
    sink = MemorySink()

    final = await make_engine(await client_for(emulator), sink).run(
        call_request("lost-1"), final_attempt=final_attempt
    )

    # A terminal error ends the request even on an early attempt: redelivery cannot help.
    assert types_of(sink.events) == [EventType.RECEIVED, EventType.FAILED]
    assert final.data == {
        "operation": "StartWebRTCContact",
        "error_code": "ResourceNotFoundException",
        "message": "Instance not found: 11111111-2222-3333-4444-555555555555",
        "transient": False,
    }
    assert final.contact_id is None
    assert (await EmulatorControl(emulator.url).stats())["contacts"] == 0


async def test_unknown_contact_flow_fails_naming_the_aws_error_code(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(contact_flow_ids=frozenset({"another-flow"}))
    sink = MemorySink()

    final = await make_engine(await client_for(emulator), sink).run(call_request("flow-1"))

    assert final.type is EventType.FAILED
    assert final.data["error_code"] == "ResourceNotFoundException"
    assert "Contact flow not found" in final.data["message"]


def tiny_describe_policy() -> GatewayPolicies:
    return GatewayPolicies(
        describe=RetryPolicy(
            "connect.describe",
            retry_on=(RetryableConnectError,),
            max_attempts=3,
            initial_s=0.01,
            max_backoff_s=0.02,
        )
    )


async def break_connect_after_start(
    emulator: Emulator, sink: MemorySink
) -> tuple[HookSink, EmulatorControl]:
    """A sink that turns every Connect call into a 500 as soon as the contact has started."""
    control = EmulatorControl(emulator.url)

    async def fail_everything(_event: object) -> None:
        await control.patch_config(error_rate=1.0)

    return HookSink(sink, EventType.STARTED, fail_everything), control


async def test_transient_error_outliving_its_budget_asks_for_redelivery_on_early_attempts(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(60.0, 60.0))
    sink = MemorySink()
    hook, control = await break_connect_after_start(emulator, sink)
    engine = make_engine(await client_for(emulator), hook, policies=tiny_describe_policy())

    with pytest.raises(RetryLater) as info:
        await engine.run(call_request("flaky-1"), final_attempt=False)

    assert info.value.cause.operation == "DescribeContact"
    assert info.value.cause.code == "InternalServiceException"
    assert types_of(sink.events) == [EventType.RECEIVED, EventType.STARTED]
    assert finals(sink.events) == []
    assert (await control.op_stats("DescribeContact"))["faults"] == 3


async def test_transient_error_outliving_its_budget_fails_on_the_final_attempt(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(60.0, 60.0))
    sink = MemorySink()
    hook, _ = await break_connect_after_start(emulator, sink)
    engine = make_engine(await client_for(emulator), hook, policies=tiny_describe_policy())

    final = await engine.run(call_request("flaky-2"), final_attempt=True)

    started = sink.events[1]
    assert types_of(sink.events) == [EventType.RECEIVED, EventType.STARTED, EventType.FAILED]
    assert final.data["transient"] is True
    assert final.data["operation"] == "DescribeContact"
    assert final.data["error_code"] == "InternalServiceException"
    assert final.contact_id == started.contact_id is not None


async def test_start_failing_transiently_leaves_no_contact_and_no_final_event(
    start_emulator: Starter, client_for: ClientFactory
) -> None:
    emulator: Emulator = await start_emulator(error_rate=1.0)
    sink = MemorySink()
    policies = GatewayPolicies(
        start=RetryPolicy(
            "connect.start", retry_on=(RetryableConnectError,), max_attempts=2, initial_s=0.01
        )
    )
    engine = make_engine(await client_for(emulator), sink, policies=policies)

    with pytest.raises(RetryLater) as info:
        await engine.run(call_request("flaky-3"), final_attempt=False)

    assert info.value.cause.operation == "StartWebRTCContact"
    assert types_of(sink.events) == [EventType.RECEIVED]
    assert (await EmulatorControl(emulator.url).stats())["contacts"] == 0
