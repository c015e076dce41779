"""No orphan contacts: a lifecycle that lets go of a waiting contact stops it first, never one an
agent has, and never mistakes a stop for the customer hanging up. Against the emulator on a
virtual clock, so deadlines pass without waiting."""

from __future__ import annotations

import random
from typing import Any, Literal

import pytest

from orchestrator.connect.gateway import GatewayPolicies
from orchestrator.connect.operations import DEFAULT_QUOTAS, Operation, Quota
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.watch import WatchPolicy
from orchestrator.errors import DeploymentFault, RetryableConnectError, RetryLater
from orchestrator.retry import RetryPolicy
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import EmulatorControl
from orchestrator.testing.ground_truth import reached_agent_after_let_go
from tests.conftest import INSTANCE_ID
from tests.support.clock import VirtualClock
from tests.support.engine import HookSink, call_request, make_engine, types_of
from tests.support.peers import ClientFactory, VirtualEmulatorFactory

DESCRIBE, STOP = Operation.DESCRIBE_CONTACT.value, Operation.STOP_CONTACT.value


def watch(on_timeout: Literal["stop", "leave"] = "stop", max_wait_s: float = 10.0) -> WatchPolicy:
    return WatchPolicy(
        queue_aware=False,
        first_delay_s=5,
        max_interval_s=5,
        max_wait_s=max_wait_s,
        jitter=0,
        on_timeout=on_timeout,
    )


def policies(attempts: int = 3) -> GatewayPolicies:
    """Seeded retries (the backoff a test relies on is drawn the same every run)."""

    def policy(name: str) -> RetryPolicy:
        return RetryPolicy(
            name,
            retry_on=(RetryableConnectError,),
            max_attempts=attempts,
            initial_s=0.25,
            rng=random.Random(3),
        )

    return GatewayPolicies(start=policy("start"), describe=policy("describe"), stop=policy("stop"))


def stopped(metrics_of: Any, reason: str, result: str) -> float:
    labels = {"reason": reason, "result": result}
    return float(metrics_of.value("orchestrator_contacts_stopped_total", labels))


async def test_a_contact_still_waiting_at_its_deadline_is_stopped_before_timed_out(
    start_virtual_emulator: VirtualEmulatorFactory, client_for: ClientFactory, vclock: VirtualClock
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(600.0, 600.0))
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink, clock=vclock, watch=watch())

    final = await engine.run(call_request("late-1"))

    assert final.type is EventType.TIMED_OUT
    assert final.data["contact_stopped"] is True
    assert EventType.DISCONNECTED not in types_of(sink.events)
    control = EmulatorControl(emulator.url)
    assert final.contact_id is not None
    vclock.advance(3600.0)  # long past the moment the agent would have answered
    truth = await control.contact(final.contact_id)
    assert (truth["DisconnectReason"], truth["ConnectedToAgentAt"]) == ("API", None)
    assert truth["StoppedAt"] >= truth["CreatedAt"] + 10.0
    assert reached_agent_after_let_go(sink.events, await control.contacts()) == []
    assert stopped(engine.metrics, "timed_out", "stopped") == 1
    # One confirmation before the stop, besides the watch's two polls.
    assert (await control.op_stats(DESCRIBE))["successes"] == 3


async def test_with_leave_a_timed_out_contact_stays_queued_and_an_agent_may_take_it_later(
    start_virtual_emulator: VirtualEmulatorFactory, client_for: ClientFactory, vclock: VirtualClock
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(60.0, 60.0))
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink, clock=vclock, watch=watch("leave"))

    final = await engine.run(call_request("leave-1"))

    assert final.type is EventType.TIMED_OUT
    assert final.data["contact_stopped"] is False
    assert final.contact_id is not None
    vclock.advance(3600.0)
    truth = await EmulatorControl(emulator.url).contact(final.contact_id)
    assert truth["StoppedAt"] is None
    assert truth["ConnectedToAgentAt"] is not None  # the orphan "leave" accepts
    contacts = await EmulatorControl(emulator.url).contacts()
    assert reached_agent_after_let_go(sink.events, contacts) == [final.contact_id]
    assert (await EmulatorControl(emulator.url).op_stats(STOP))["calls"] == 0


async def test_an_agent_found_when_about_to_stop_is_never_stopped_and_the_request_goes_on_late(
    start_virtual_emulator: VirtualEmulatorFactory, client_for: ClientFactory, vclock: VirtualClock
) -> None:
    # The watch's last poll is at the deadline (10 s); the agent answers a moment later, while
    # the confirmation waits out injected 5xx answers: it finds the agent.
    emulator = await start_virtual_emulator(agent_delay_s=(10.001, 10.001))
    control = EmulatorControl(emulator.url)
    await control.fail_next(DESCRIBE, "InternalServiceException", times=2, after=2)
    sink = MemorySink()
    engine = make_engine(
        await client_for(emulator), sink, clock=vclock, watch=watch(), policies=policies()
    )

    final = await engine.run(call_request("late-agent"))

    assert final.type is EventType.SCREEN_SHARING_STARTED
    connected = next(e for e in sink.events if e.type is EventType.AGENT_CONNECTED)
    assert connected.data["late"] is True
    assert final.contact_id is not None
    truth = await control.contact(final.contact_id)
    assert truth["StoppedAt"] is None
    assert (await control.op_stats(STOP))["calls"] == 0
    assert stopped(engine.metrics, "timed_out", "agent_connected") == 1


async def test_an_agent_who_answers_while_the_stop_waits_for_its_token_is_never_cut_off(
    start_virtual_emulator: VirtualEmulatorFactory, client_for: ClientFactory, vclock: VirtualClock
) -> None:
    # Contacts let go of at once share StopContact's small rate: a stop may wait long for its
    # token. Here the only token is gone and the next is ~25 s away; the deadline is at 10 s and
    # the agent answers at 12 s, while the stop waits. The confirmation comes after the token.
    emulator = await start_virtual_emulator(agent_delay_s=(12.0, 12.0))
    budget = RateBudget({**DEFAULT_QUOTAS, Operation.STOP_CONTACT: Quota(0.04, 1.0)}, clock=vclock)
    await budget[STOP].acquire()  # another contact's stop took it
    sink = MemorySink()
    client = await client_for(emulator)
    engine = make_engine(client, sink, clock=vclock, watch=watch(), budget=budget)

    final = await engine.run(call_request("answered-meanwhile"))

    assert final.type is EventType.SCREEN_SHARING_STARTED
    connected = next(e for e in sink.events if e.type is EventType.AGENT_CONNECTED)
    assert connected.data["late"] is True
    control = EmulatorControl(emulator.url)
    assert await control.stopped_with_agent() == []
    assert (await control.op_stats(STOP))["calls"] == 0
    assert stopped(engine.metrics, "timed_out", "agent_connected") == 1


async def test_a_terminal_error_after_the_start_stops_the_contact_before_request_failed(
    start_virtual_emulator: VirtualEmulatorFactory, client_for: ClientFactory, vclock: VirtualClock
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(600.0, 600.0))
    control = EmulatorControl(emulator.url)
    await control.fail_next(DESCRIBE, "InvalidParameterException")
    engine = make_engine(await client_for(emulator), MemorySink(), clock=vclock, watch=watch())

    final = await engine.run(call_request("fails-1"))

    assert final.type is EventType.FAILED
    assert final.data["error_code"] == "InvalidParameterException"
    assert final.data["contact_stopped"] is True
    assert final.contact_id is not None
    assert (await control.contact(final.contact_id))["DisconnectReason"] == "API"
    assert stopped(engine.metrics, "failed", "stopped") == 1


async def test_a_stop_that_cannot_be_confirmed_is_not_made(
    start_virtual_emulator: VirtualEmulatorFactory, client_for: ClientFactory, vclock: VirtualClock
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(600.0, 600.0))
    control = EmulatorControl(emulator.url)
    # The watch's poll and the confirmation both fail: nobody knows whether an agent has it.
    await control.fail_next(DESCRIBE, "InvalidParameterException", times=2)
    engine = make_engine(await client_for(emulator), MemorySink(), clock=vclock, watch=watch())

    final = await engine.run(call_request("unconfirmed"))

    assert final.type is EventType.FAILED
    assert final.data["contact_stopped"] is False
    assert (await control.op_stats(STOP))["calls"] == 0
    assert stopped(engine.metrics, "failed", "error") == 1


async def test_given_up_on_the_last_attempt_stops_the_contact_and_earlier_attempts_leave_it(
    start_virtual_emulator: VirtualEmulatorFactory, client_for: ClientFactory, vclock: VirtualClock
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(600.0, 600.0))
    control = EmulatorControl(emulator.url)
    client = await client_for(emulator)
    engine = make_engine(client, MemorySink(), clock=vclock, watch=watch(), policies=policies())

    # An early attempt hands the request back: a redelivery resumes the watch.
    await control.fail_next(DESCRIBE, "InternalServiceException", times=3)
    with pytest.raises(RetryLater):
        await engine.run(call_request("flaky-1"), final_attempt=False)
    assert (await control.op_stats(STOP))["calls"] == 0

    await control.fail_next(DESCRIBE, "InternalServiceException", times=3)
    final = await engine.run(call_request("flaky-1"), announce=False)

    assert final.type is EventType.FAILED
    assert final.data["transient"] is True
    assert final.data["contact_stopped"] is True
    assert final.contact_id is not None
    assert (await control.contact(final.contact_id))["DisconnectReason"] == "API"
    assert stopped(engine.metrics, "given_up", "stopped") == 1


async def test_a_redelivery_of_a_stopped_timed_out_request_reaches_the_same_final_event(
    start_virtual_emulator: VirtualEmulatorFactory, client_for: ClientFactory, vclock: VirtualClock
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(600.0, 600.0))
    client = await client_for(emulator)
    first = await make_engine(client, MemorySink(), clock=vclock, watch=watch()).run(
        call_request("again-1")
    )
    vclock.advance(30.0)

    sink = MemorySink()
    again = await make_engine(client, sink, clock=vclock, watch=watch()).run(
        call_request("again-1")
    )

    assert (first.type, again.type) == (EventType.TIMED_OUT, EventType.TIMED_OUT)
    assert again.contact_id == first.contact_id
    assert again.data["contact_stopped"] is True  # DisconnectReason API, after the deadline
    assert again.data["deadline"] == first.data["deadline"]
    assert EventType.DISCONNECTED not in types_of(sink.events)
    assert (await EmulatorControl(emulator.url).op_stats(STOP))["calls"] == 1


async def test_a_contact_stopped_elsewhere_before_its_deadline_is_cancelled_not_disconnected(
    start_virtual_emulator: VirtualEmulatorFactory, client_for: ClientFactory, vclock: VirtualClock
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(600.0, 600.0))
    client = await client_for(emulator)
    sink = MemorySink()

    async def another_worker_stops_it(event: LifecycleEvent) -> None:
        assert event.contact_id is not None
        await client.stop_contact(InstanceId=INSTANCE_ID, ContactId=event.contact_id)

    hooked = HookSink(sink, EventType.STARTED, another_worker_stops_it)
    engine = make_engine(client, hooked, clock=vclock, watch=watch())

    final = await engine.run(call_request("stopped-elsewhere"))

    assert final.type is EventType.CANCELLED
    assert final.data == {
        "stage": "waiting_for_agent",
        "contact_stopped": True,
        "stopped_by": "elsewhere",
    }
    assert EventType.DISCONNECTED not in types_of(sink.events)


async def test_a_stop_the_deployment_may_not_make_is_a_deployment_fault(
    start_virtual_emulator: VirtualEmulatorFactory, client_for: ClientFactory, vclock: VirtualClock
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(600.0, 600.0))
    await EmulatorControl(emulator.url).fail_next(STOP, "AccessDeniedException")
    sink = MemorySink()
    engine = make_engine(await client_for(emulator), sink, clock=vclock, watch=watch())

    with pytest.raises(DeploymentFault):
        await engine.run(call_request("no-stop-permission"))

    assert not [e for e in sink.events if e.final]  # no request is ended for it
