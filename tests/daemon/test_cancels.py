"""Cancel messages through a real worker, local SQS and the emulator: each outcome, as the
requester and the metrics see it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.settings import Settings
from orchestrator.daemon.worker import Worker
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.requests import cancel_body
from tests.daemon.conftest import DrainedWorker
from tests.support import (
    EmulatorFactory,
    create_queue_with_dlq,
    eventually,
    queue_counts,
    request_body,
    send_all,
    settings_for,
)
from tests.support.engine import started_contact, types_of

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(90)

START = "StartWebRTCContact"


def final_of(sink: MemorySink, request_id: str) -> LifecycleEvent | None:
    return next((e for e in sink.events if e.request_id == request_id and e.final), None)


def cancels(worker: Worker, result: str) -> float:
    return worker.metrics.value("orchestrator_cancels_total", {"result": result})


@asynccontextmanager
async def running(settings: Settings, sink: MemorySink) -> AsyncIterator[Worker]:
    """A worker running (not in drain mode) for the block, then stopped."""
    async with open_worker(settings, extra_sinks=[sink]) as worker, anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        try:
            yield worker
        finally:
            worker.stop()
            worker.stop()


class Peers:
    def __init__(self, emulator: Emulator, sqs_server: LocalSqsServer, sqs: SQSClient) -> None:
        self.emulator = emulator
        self.control = EmulatorControl(emulator.url)
        self.sqs_server = sqs_server
        self.sqs = sqs
        self.queue = ""
        self.dlq = ""

    async def settings(self, **sections: Any) -> Settings:
        self.queue, self.dlq = await create_queue_with_dlq(self.sqs, max_receive_count=3)
        return settings_for(self.emulator.url, self.sqs_server.url, self.queue, **sections)

    async def send(self, *bodies: str) -> None:
        await send_all(self.sqs, self.queue, list(bodies))

    async def queue_empty(self) -> bool:
        return await queue_counts(self.sqs, self.queue) == (0, 0)


@pytest.fixture
async def waiting_peers(
    start_emulator: EmulatorFactory, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> Peers:
    """No agent for a minute: contacts wait in their queue."""
    return Peers(await start_emulator(agent_delay_s=(60.0, 60.0)), sqs_server, sqs_client)


async def test_a_cancel_before_its_request_keeps_the_request_from_connect(
    waiting_peers: Peers,
) -> None:
    peers, sink = waiting_peers, MemorySink()
    async with running(await peers.settings(), sink) as worker:
        await peers.send(cancel_body("early-1"))
        await eventually(lambda: cancels(worker, "unknown") == 1, message="tombstone recorded")
        await eventually(peers.queue_empty, message="the cancel acknowledged")
        await peers.send(request_body("early-1"))
        final = await eventually(lambda: final_of(sink, "early-1"))

    assert (final.type, final.data["stage"]) == (EventType.CANCELLED, "before_start")
    assert await peers.control.contacts() == []
    assert cancels(worker, "cancelled") == 0  # counted once, when received: unknown then


async def test_a_cancel_while_the_contact_waits_stops_it_and_a_second_cancel_is_too_late(
    waiting_peers: Peers,
) -> None:
    peers, sink = waiting_peers, MemorySink()
    async with running(await peers.settings(), sink) as worker:
        await peers.send(request_body("queued-1"))
        contact_id = await eventually(lambda: started_contact(sink.events, "queued-1"))
        await peers.send(cancel_body("queued-1"))
        final = await eventually(lambda: final_of(sink, "queued-1"))
        await peers.send(cancel_body("queued-1"))
        await eventually(lambda: cancels(worker, "too_late") == 1, message="second cancel")
        await eventually(peers.queue_empty)

    assert final.type is EventType.CANCELLED
    assert (final.data["stage"], final.data["contact_stopped"]) == ("waiting_for_agent", True)
    assert EventType.DISCONNECTED not in types_of(sink.events)
    truth = await peers.control.contact(contact_id)
    assert (truth["DisconnectReason"], truth["ConnectedToAgentAt"]) == ("API", None)
    assert (cancels(worker, "cancelled"), cancels(worker, "unknown")) == (1, 0)
    stopped = {"reason": "cancelled", "result": "stopped"}
    assert worker.metrics.value("orchestrator_contacts_stopped_total", stopped) == 1


async def test_a_cancel_while_waiting_at_the_capacity_gate_never_reaches_connect(
    start_emulator: EmulatorFactory, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    emulator = await start_emulator(agent_delay_s=(60.0, 60.0), max_concurrent_calls=1)
    peers, sink = Peers(emulator, sqs_server, sqs_client), MemorySink()
    settings = await peers.settings(connect={"capacity_max_wait_s": 60})
    async with running(settings, sink) as worker:
        await peers.send(request_body("cap-1"))
        await eventually(lambda: started_contact(sink.events, "cap-1"))
        await peers.send(request_body("cap-2"))

        async def refused() -> bool:
            return (await peers.control.op_stats(START))["concurrency_limited"] >= 1

        await eventually(refused, message="cap-2 at the capacity gate")
        await peers.send(cancel_body("cap-2"), cancel_body("cap-1"))
        finals = [
            await eventually(lambda: final_of(sink, "cap-2")),
            await eventually(lambda: final_of(sink, "cap-1")),
        ]

    assert [(f.type, f.data["stage"]) for f in finals] == [
        (EventType.CANCELLED, "before_start"),
        (EventType.CANCELLED, "waiting_for_agent"),
    ]
    assert (await peers.control.op_stats(START))["successes"] == 1
    assert cancels(worker, "cancelled") == 2


async def test_a_cancel_after_the_final_event_is_too_late_and_one_for_no_request_is_unknown(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    peers, sink = Peers(emulator, sqs_server, sqs_client), MemorySink()
    async with running(await peers.settings(), sink) as worker:
        await peers.send(request_body("done-1"))
        final = await eventually(lambda: final_of(sink, "done-1"))
        await peers.send(cancel_body("done-1"), cancel_body("nobody-1"))
        await eventually(lambda: cancels(worker, "too_late") + cancels(worker, "unknown") == 2)
        await eventually(peers.queue_empty)

    assert final.type is EventType.SCREEN_SHARING_STARTED
    assert (cancels(worker, "too_late"), cancels(worker, "unknown")) == (1, 1)
    assert [e for e in sink.events if e.request_id == "nobody-1"] == []
    assert (await peers.control.op_stats("StopContact"))["calls"] == 0
    assert await queue_counts(sqs_client, peers.dlq) == (0, 0)


async def test_a_malformed_cancel_goes_to_the_dlq_without_an_event_for_the_request_it_names(
    drained_worker: DrainedWorker, emulator: Emulator
) -> None:
    bodies = [
        cancel_body("live-1", Bogus=1),
        json.dumps({"Action": "stop", "RequestId": "live-1"}),
        request_body("live-1"),
    ]
    run = await drained_worker(bodies)

    assert run.finals() == {"live-1": EventType.SCREEN_SHARING_STARTED}
    assert run.worker.metrics.value("orchestrator_cancels_total", {"result": "malformed"}) == 2
    assert await run.left() == ((0, 0), (2, 0))
    assert len(await EmulatorControl(emulator.url).contacts()) == 1


async def test_a_cancel_naming_its_contact_stops_it_from_a_worker_that_does_not_hold_it(
    waiting_peers: Peers,
) -> None:
    """Several workers without fleet mode: the holder sees its contact stopped elsewhere."""
    peers, holder_sink, other_sink = waiting_peers, MemorySink(), MemorySink()
    holder_settings = await peers.settings()
    holder_queue = peers.queue
    other_settings = await peers.settings()  # the other worker's own queue
    async with (
        running(holder_settings, holder_sink) as holder,
        running(other_settings, other_sink) as other,
    ):
        await send_all(peers.sqs, holder_queue, [request_body("far-1")])
        contact_id = await eventually(lambda: started_contact(holder_sink.events, "far-1"))
        await peers.send(cancel_body("far-1", contact_id))
        final = await eventually(lambda: final_of(holder_sink, "far-1"))

    assert final.type is EventType.CANCELLED
    assert final.data["stage"] == "waiting_for_agent"
    assert (final.data["contact_stopped"], final.data["stopped_by"]) == (True, "elsewhere")
    assert EventType.DISCONNECTED not in types_of(holder_sink.events)
    assert other_sink.events == []
    assert (cancels(other, "cancelled"), cancels(holder, "cancelled")) == (1, 0)
    assert await peers.control.stopped_with_agent() == []
