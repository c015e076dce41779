"""Contact events end to end: the emulator publishes Connect's contact events to a real SQS queue
(as an EventBridge rule would), the worker consumes it beside its request queue, over real HTTP."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.settings import Settings
from orchestrator.engine.events import EventType
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.support import (
    create_queue_with_dlq,
    eventually,
    queue_counts,
    request_body,
    send_all,
    settings_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from types_aiobotocore_sqs import SQSClient

    from orchestrator.daemon.worker import Worker
    from orchestrator.metrics import Metrics

pytestmark = pytest.mark.timeout(90)

#: A polling schedule no test can finish on in time: whatever completes quickly was noticed by
#: an event.
SLOW_POLLING = {"first_delay_s": 30.0, "multiplier": 2.0, "max_interval_s": 60.0}
#: A quick safety net, for tests where events are lost.
QUICK_POLLING = {"first_delay_s": 0.5, "multiplier": 1.5, "max_interval_s": 1.0}


async def events_queue(sqs_client: SQSClient) -> str:
    answer = await sqs_client.create_queue(QueueName=f"contact-events-{uuid.uuid4().hex[:12]}")
    return answer["QueueUrl"]


def settings(
    emulator: Emulator,
    sqs_server: LocalSqsServer,
    queue: str,
    events: str,
    **contact_events: Any,
) -> Settings:
    return settings_for(
        emulator.url,
        sqs_server.url,
        queue,
        watch={"max_wait_s": 120},
        contact_events={"queue_url": events, "wait_time_s": 1, **contact_events},
    )


def finals(sink: MemorySink) -> dict[str, EventType]:
    return {e.request_id: e.type for e in sink.events if e.final}


def outcome(metrics: Metrics, name: str) -> float:
    return metrics.value("orchestrator_contact_events_total", {"outcome": name})


def detected(metrics: Metrics, via: str) -> float:
    return metrics.value("orchestrator_agent_detection_delay_seconds_count", {"via": via})


async def describe_calls(emulator: Emulator) -> int:
    return (await EmulatorControl(emulator.url).op_stats("DescribeContact"))["calls"]


async def run_until(worker: Worker, condition: Callable[[], Any], *, within: float = 40) -> None:
    """Run the worker (not draining) until `condition` holds, then stop it; both loops run."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await eventually(condition, within=within)
        worker.stop()


async def test_events_wake_watches_within_a_second_despite_a_slow_polling_schedule(
    start_emulator: Callable[..., Any], sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    events = await events_queue(sqs_client)
    emulator: Emulator = await start_emulator(
        agent_delay_s=(0.5, 1.0), events_queue_url=events, events_endpoint_url=sqs_server.url
    )
    queue, _ = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, queue, [request_body(f"ev-{i}") for i in range(4)])
    sink = MemorySink()

    began = time.monotonic()
    async with open_worker(
        settings(emulator, sqs_server, queue, events, **SLOW_POLLING), extra_sinks=[sink]
    ) as worker:
        await worker.run(drain=True)
    took = time.monotonic() - began

    assert finals(sink) == {f"ev-{i}": EventType.SCREEN_SHARING_STARTED for i in range(4)}
    assert took < 25  # the first scheduled poll would come 30 s after each start
    # Every verdict still comes from DescribeContact: one confirmation per contact, and one
    # poll per contact woken because a younger one connected first (agents here answer in no
    # particular order, so such a contact may still be waiting; its own event follows).
    wrong_guesses = worker.metrics.value("orchestrator_passed_wakes_total", {"result": "waiting"})
    assert await describe_calls(emulator) == 4 + wrong_guesses
    # Each connection is noticed after its event, or by the poll of a contact woken because a
    # younger one connected first (its own event still on the way): never by the schedule.
    by_event = detected(worker.metrics, "event")
    assert by_event + detected(worker.metrics, "poll") == 4
    assert outcome(worker.metrics, "matched") + outcome(worker.metrics, "early") >= by_event
    assert worker.metrics.value("orchestrator_passed_wakes_total", {"result": "served"}) >= (
        4 - by_event
    )
    # Detection delay (Connect's connection time to the confirming poll) is within a second.
    delay_sum = sum(
        worker.metrics.value("orchestrator_agent_detection_delay_seconds_sum", {"via": via})
        for via in ("event", "poll")
    )
    assert delay_sum / 4 < 1.0
    assert worker.readiness.snapshot()["contact_events"].ok


async def test_lost_connected_events_fall_back_to_polling(
    start_emulator: Callable[..., Any], sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    events = await events_queue(sqs_client)
    emulator: Emulator = await start_emulator(
        agent_delay_s=(0.3, 0.6),
        events_queue_url=events,
        events_endpoint_url=sqs_server.url,
        events_drop_rate=1.0,
    )
    queue, _ = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, queue, [request_body(f"lost-{i}") for i in range(3)])
    sink = MemorySink()

    async with open_worker(
        settings(emulator, sqs_server, queue, events, **QUICK_POLLING), extra_sinks=[sink]
    ) as worker:
        await worker.run(drain=True)

    assert finals(sink) == {f"lost-{i}": EventType.SCREEN_SHARING_STARTED for i in range(3)}
    assert detected(worker.metrics, "poll") == 3
    assert detected(worker.metrics, "event") == 0
    stats = await EmulatorControl(emulator.url).stats()
    assert stats["contact_events_dropped"] >= 6  # INITIATED, QUEUED, CONNECTED_TO_AGENT, ...


async def test_duplicated_and_reordered_events_change_nothing(
    start_emulator: Callable[..., Any], sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    events = await events_queue(sqs_client)
    emulator: Emulator = await start_emulator(
        agent_delay_s=(0.3, 1.0),
        events_queue_url=events,
        events_endpoint_url=sqs_server.url,
        events_duplicate_rate=1.0,
        events_delay_s=(0.0, 1.0),
    )
    queue, _ = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, queue, [request_body(f"dup-{i}") for i in range(4)])
    sink = MemorySink()

    async with open_worker(
        settings(emulator, sqs_server, queue, events, **SLOW_POLLING), extra_sinks=[sink]
    ) as worker:
        await run_until(
            worker,
            lambda: len(finals(sink)) == 4 and outcome(worker.metrics, "duplicate") >= 4,
        )

    assert finals(sink) == {f"dup-{i}": EventType.SCREEN_SHARING_STARTED for i in range(4)}
    # Each connection is noticed once: after its event, or by the poll of a contact woken
    # because a younger one connected (its own event still on the way).
    assert detected(worker.metrics, "event") + detected(worker.metrics, "poll") == 4
    # A second copy of CONNECTED_TO_AGENT costs no second DescribeContact.
    wrong_guesses = worker.metrics.value("orchestrator_passed_wakes_total", {"result": "waiting"})
    assert await describe_calls(emulator) == 4 + wrong_guesses


async def test_an_event_never_decides_the_outcome_describe_contact_does(
    start_emulator: Callable[..., Any], sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    events = await events_queue(sqs_client)
    emulator: Emulator = await start_emulator(
        agent_delay_s=(300.0, 300.0), events_queue_url=events, events_endpoint_url=sqs_server.url
    )
    control = EmulatorControl(emulator.url)
    queue, _ = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, queue, [request_body("lied-to")])
    sink = MemorySink()

    async def lie_then_hang_up() -> None:
        started = await eventually(
            lambda: next((e for e in sink.events if e.type is EventType.STARTED), None)
        )
        contact = started.contact_id
        assert contact is not None
        lie = {
            "id": "forged-1",
            "detail-type": "Amazon Connect Contact Event",
            "source": "aws.connect",
            "detail": {"contactId": contact, "eventType": "CONNECTED_TO_AGENT"},
        }
        await send_all(sqs_client, events, [json.dumps(lie)] * 2)  # and a duplicate of it
        await eventually(lambda: outcome(worker.metrics, "duplicate") >= 1)
        await eventually(
            lambda: (
                worker.metrics.value(
                    "orchestrator_contact_events_received_total", {"type": "CONNECTED_TO_AGENT"}
                )
                == 2
            )
        )
        # The confirming poll (one for the event and its duplicate) finds the customer still
        # waiting; only then does the customer hang up (else one poll would see both).
        await eventually(lambda: describe_calls(emulator), message="the confirming poll")
        assert not finals(sink)
        await control.disconnect(contact)

    async with (
        open_worker(
            settings(emulator, sqs_server, queue, events, **SLOW_POLLING), extra_sinks=[sink]
        ) as worker,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(lie_then_hang_up)
        await worker.run(drain=True)

    assert finals(sink) == {"lied-to": EventType.DISCONNECTED}
    assert EventType.AGENT_CONNECTED not in [e.type for e in sink.events]
    assert await describe_calls(emulator) == 2  # one per distinct event, nothing else


async def test_junk_and_foreign_contacts_are_counted_and_deleted_while_the_consumer_runs_on(
    start_emulator: Callable[..., Any], sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    events = await events_queue(sqs_client)
    emulator: Emulator = await start_emulator(
        agent_delay_s=(2.0, 2.5), events_queue_url=events, events_endpoint_url=sqs_server.url
    )
    queue, _ = await create_queue_with_dlq(sqs_client)
    junk = ["not json", "[1, 2]", request_body("wrong-queue"), '{"detail-type": "x"}']
    foreign = {
        "id": "foreign-1",
        "detail-type": "Amazon Connect Contact Event",
        "detail": {"contactId": "someone-elses-contact", "eventType": "CONNECTED_TO_AGENT"},
    }
    await send_all(sqs_client, events, [*junk, json.dumps(foreign)])
    await send_all(sqs_client, queue, [request_body("after-junk")])
    sink = MemorySink()

    async with open_worker(
        settings(emulator, sqs_server, queue, events, **SLOW_POLLING), extra_sinks=[sink]
    ) as worker:
        await run_until(
            worker,
            lambda: finals(sink) and outcome(worker.metrics, "malformed") == len(junk),
        )

    assert finals(sink) == {"after-junk": EventType.SCREEN_SHARING_STARTED}
    assert detected(worker.metrics, "event") == 1  # the consumer kept running after the junk
    assert (
        worker.metrics.value(
            "orchestrator_contact_events_received_total", {"type": "CONNECTED_TO_AGENT"}
        )
        == 2
    )
    await eventually(lambda: _empty(sqs_client, events))  # junk deleted, not retried forever


async def _empty(sqs_client: SQSClient, queue: str) -> bool:
    return await queue_counts(sqs_client, queue) == (0, 0)


async def test_an_unreachable_events_queue_fails_readiness_while_requests_complete_by_polling(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    events = await events_queue(sqs_client)
    await sqs_client.delete_queue(QueueUrl=events)
    queue, _ = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, queue, [request_body(f"poll-{i}") for i in range(3)])
    sink = MemorySink()

    async with (
        open_worker(
            settings(emulator, sqs_server, queue, events, **QUICK_POLLING), extra_sinks=[sink]
        ) as worker,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(worker.run)

        def events_not_ready() -> str | None:
            report = worker.readiness.snapshot().get("contact_events")
            return report.reason if report is not None and not report.ok else None

        reason = await eventually(events_not_ready)
        assert "contact-events queue" in reason
        assert not worker.readiness.ready
        await eventually(lambda: len(finals(sink)) == 3)
        assert set(finals(sink).values()) == {EventType.SCREEN_SHARING_STARTED}

        # The queue comes back (same name, same URL): the consumer recovers by itself.
        name = events.rsplit("/", 1)[1]
        assert (await sqs_client.create_queue(QueueName=name))["QueueUrl"] == events
        await eventually(lambda: worker.readiness.snapshot()["contact_events"].ok, within=40)
        worker.stop()

    assert worker.readiness.ready


async def test_shutdown_stops_the_consumer_in_the_middle_of_a_long_poll(
    start_emulator: Callable[..., Any], sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    events = await events_queue(sqs_client)
    emulator: Emulator = await start_emulator(
        agent_delay_s=(0.3, 0.5), events_queue_url=events, events_endpoint_url=sqs_server.url
    )
    queue, _ = await create_queue_with_dlq(sqs_client)
    sink = MemorySink()
    config = settings(emulator, sqs_server, queue, events, **SLOW_POLLING)
    config = config.model_copy(
        update={"contact_events": config.contact_events.model_copy(update={"wait_time_s": 20})}
    )
    await send_all(sqs_client, queue, [request_body("last")])

    async with open_worker(config, extra_sinks=[sink]) as worker:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await eventually(lambda: finals(sink))  # noticed by an event: both loops run
            asked = time.monotonic()
            worker.stop()
        stopped_in = time.monotonic() - asked

    assert finals(sink) == {"last": EventType.SCREEN_SHARING_STARTED}
    assert detected(worker.metrics, "event") == 1
    assert stopped_in < 10  # the events queue's 20 s long poll did not hold the worker up
