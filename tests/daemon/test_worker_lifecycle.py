"""The worker over time: heartbeat, shutdown and resume, concurrency, ordering, errors."""

from __future__ import annotations

import dataclasses
import gc
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from orchestrator.daemon.assembly import open_worker
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.request import CallRequest, client_token
from orchestrator.sinks import MemorySink, SqsEventSink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.support import (
    RecordingSource,
    create_queue_with_dlq,
    eventually,
    queue_counts,
    request_body,
    send_all,
    settings_for,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(90)


def final_types(events: Sequence[LifecycleEvent]) -> dict[str, set[EventType]]:
    out: dict[str, set[EventType]] = {}
    for event in events:
        if event.final:
            out.setdefault(event.request_id, set()).add(event.type)
    return out


async def test_visibility_heartbeat_keeps_a_long_watch_from_being_redelivered(
    start_emulator: Any, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(7.0, 7.0))
    queue, _ = await create_queue_with_dlq(sqs_client, max_receive_count=5)
    await send_all(sqs_client, queue, [request_body("long-wait")])
    sink = MemorySink()
    settings = settings_for(
        emulator.url,
        sqs_server.url,
        queue,
        queue={"visibility_timeout_s": 2},
        watch={"first_delay_s": 0.5, "max_interval_s": 1.0},
    )
    async with open_worker(settings, extra_sinks=[sink]) as worker:
        await worker.run(drain=True)

    # The lifecycle lasted over three visibility timeouts, yet the message was received once.
    assert worker.metrics.value("orchestrator_messages_received_total") == 1
    assert worker.metrics.value("orchestrator_visibility_extensions_total", {"result": "ok"}) >= 3
    assert final_types(sink.events) == {"long-wait": {EventType.SCREEN_SHARING_STARTED}}
    assert len(await EmulatorControl(emulator.url).contacts()) == 1


async def test_stop_mid_watch_hands_messages_back_and_another_worker_resumes_the_same_contacts(
    start_emulator: Any, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(3.0, 3.0))
    queue, _ = await create_queue_with_dlq(sqs_client, max_receive_count=5)
    ids = [f"resume-{i}" for i in range(4)]
    await send_all(sqs_client, queue, [request_body(rid) for rid in ids])
    first_sink, second_sink = MemorySink(), MemorySink()
    settings = settings_for(emulator.url, sqs_server.url, queue, shutdown={"grace_period_s": 0})

    async def all_started() -> bool:
        return len(await EmulatorControl(emulator.url).contacts()) == len(ids)

    async with (
        open_worker(settings, extra_sinks=[first_sink]) as first,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(first.run)
        await eventually(all_started, message="every contact to start")
        first.stop()
        first.stop()  # idempotent
    assert first.metrics.value(
        "orchestrator_messages_handed_back_total", {"reason": "shutdown"}
    ) == len(ids)
    assert final_types(first_sink.events) == {}  # no false final event
    assert await queue_counts(sqs_client, queue) == (len(ids), 0)  # back at once

    async with open_worker(settings, extra_sinks=[second_sink]) as second:
        await second.run(drain=True)

    started = {e.request_id: e.contact_id for e in first_sink.events if e.type is EventType.STARTED}
    resumed = {
        e.request_id: e.contact_id for e in second_sink.events if e.type is EventType.STARTED
    }
    assert started == resumed
    assert final_types(second_sink.events) == {
        rid: {EventType.SCREEN_SHARING_STARTED} for rid in ids
    }
    contacts = await EmulatorControl(emulator.url).contacts()
    assert sorted(c["ClientToken"] for c in contacts) == sorted(
        client_token(rid, "start") for rid in ids
    )


async def test_two_workers_on_one_queue_never_start_two_contacts_for_one_request(
    start_emulator: Any, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(0.2, 0.6), max_concurrent_calls=None)
    queue, _ = await create_queue_with_dlq(sqs_client, max_receive_count=5)
    ids = [f"dup-{i}" for i in range(8)]
    # Every request is sent twice: producers retry too.
    await send_all(sqs_client, queue, [request_body(rid) for rid in ids + ids])
    sinks = [MemorySink(), MemorySink()]
    settings = settings_for(emulator.url, sqs_server.url, queue)
    async with (
        open_worker(settings, extra_sinks=[sinks[0]]) as one,
        open_worker(settings, extra_sinks=[sinks[1]]) as two,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(lambda: one.run(drain=True))
        tg.start_soon(lambda: two.run(drain=True))

    contacts = await EmulatorControl(emulator.url).contacts()
    per_token = Counter(c["ClientToken"] for c in contacts)
    assert sorted(per_token) == sorted(client_token(rid, "start") for rid in ids)
    assert set(per_token.values()) == {1}
    outcomes = final_types([*sinks[0].events, *sinks[1].events])
    assert outcomes == {rid: {EventType.SCREEN_SHARING_STARTED} for rid in ids}
    assert all(c["ScreenSharingStarts"] == 1 for c in contacts)


@dataclasses.dataclass
class RecordingSink:
    """Wraps a real sink; remembers when each final event had been delivered."""

    inner: Any
    name: str = "recording"
    delivered_at: dict[str, float] = dataclasses.field(default_factory=dict)

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        await self.inner.publish(events)
        for event in events:
            if event.final:
                self.delivered_at[event.request_id] = time.monotonic()


async def test_final_events_reach_the_sqs_sink_before_the_request_is_deleted(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    events_queue = (await sqs_client.create_queue(QueueName=f"ev-{uuid.uuid4().hex[:8]}"))[
        "QueueUrl"
    ]
    ids = [f"order-{i}" for i in range(5)]
    await send_all(sqs_client, queue, [request_body(rid) for rid in ids])
    recorder = RecordingSink(SqsEventSink(sqs_client, events_queue, include_connection_data=True))
    settings = settings_for(emulator.url, sqs_server.url, queue)
    async with open_worker(settings, extra_sinks=[recorder]) as worker:
        source = RecordingSource(worker.source)
        worker.source = source
        await worker.run(drain=True)

    deleted_at = {}
    for at, kind, message in source.calls:
        if kind == "delete":
            deleted_at[message.body] = at
    for rid in ids:
        assert recorder.delivered_at[rid] < deleted_at[request_body(rid)]
    # And the events really are on the events queue.
    got: list[str] = []
    while True:
        batch = await sqs_client.receive_message(
            QueueUrl=events_queue, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        if not batch.get("Messages"):
            break
        got.extend(m["Body"] for m in batch["Messages"])
    assert sum('"final":true' in body for body in got) == len(ids)


async def test_worker_never_holds_more_messages_than_it_can_start(
    start_emulator: Any, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(0.3, 0.5))
    queue, _ = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, queue, [request_body(f"cap-{i}") for i in range(7)])
    settings = settings_for(emulator.url, sqs_server.url, queue, queue={"max_in_flight": 2})
    async with open_worker(settings) as worker:
        source = RecordingSource(worker.source)
        worker.source = source
        await worker.run(drain=True)

    asked = [args[0] for _, kind, args in source.calls if kind == "receive"]
    assert max(asked) <= 2
    assert source.max_outstanding <= 2
    assert worker.metrics.value("orchestrator_messages_acknowledged_total") == 7


async def test_worker_is_not_ready_until_the_queue_answers_and_recovers_when_it_appears(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    name = f"late-{uuid.uuid4().hex[:8]}"
    url = f"{sqs_server.url}/123456789012/{name}"
    sink = MemorySink()
    settings = settings_for(emulator.url, sqs_server.url, url)
    async with open_worker(settings, extra_sinks=[sink]) as worker:
        worker.options = dataclasses.replace(worker.options, receive_backoff_s=(0.05, 0.2))
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            # The redrive policy is read before the first receive: unreadable, the worker waits
            # and says why on /readyz instead of guessing that there is no dead-letter queue.
            await eventually(
                lambda: (
                    not worker.readiness.ready
                    and f"queue not found: {url}"
                    in (worker.readiness.snapshot()["queue"].reason or "")
                ),
                message="the queue part to fail readiness",
            )
            assert worker.status.running
            created = (await sqs_client.create_queue(QueueName=name))["QueueUrl"]
            await send_all(sqs_client, created, [request_body("late-1")])
            await eventually(
                lambda: any(e.final for e in sink.events), message="the request to complete"
            )
            assert worker.readiness.ready
            worker.stop()
    assert final_types(sink.events) == {"late-1": {EventType.SCREEN_SHARING_STARTED}}


async def test_a_watched_contact_keeps_no_parsed_request_in_the_worker(
    start_emulator: Any, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    # Memory per watched contact: once the contact exists, neither the worker nor the engine
    # keeps the validated request (a retry in place reads it again from the message).
    emulator: Emulator = await start_emulator(agent_delay_s=(600.0, 600.0))
    queue, _ = await create_queue_with_dlq(sqs_client, max_receive_count=5)
    ids = [f"slim-{i}" for i in range(4)]
    await send_all(sqs_client, queue, [request_body(rid) for rid in ids])
    sink = MemorySink()
    settings = settings_for(
        emulator.url,
        sqs_server.url,
        queue,
        watch={"first_delay_s": 300.0, "max_interval_s": 300.0},
        shutdown={"grace_period_s": 0},
    )

    def parsed_requests() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) is CallRequest)

    async with open_worker(settings, extra_sinks=[sink]) as worker, anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await eventually(lambda: len(worker.engine.notifier) == len(ids), message="all watched")
        assert {e.request_id for e in sink.events if e.type is EventType.STARTED} == set(ids)
        assert parsed_requests() == 0
        worker.stop()
