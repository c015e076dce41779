"""Admission by start capacity, request expiry and deployment faults: the backlog stays in the
queue, nothing is started that should not be, and nothing is ended that is not the request's
fault. Real worker, real SQS server, real emulator."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from aiohttp import web

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.worker import Worker
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.request import client_token, parse_request
from orchestrator.errors import SinkError
from orchestrator.sinks import MemorySink
from orchestrator.sqs import QueueMessage
from orchestrator.testing.emulator import Emulator, EmulatorControl
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.support import (
    RecordingSource,
    create_queue_with_dlq,
    drain_bodies,
    eventually,
    queue_counts,
    request_body,
    send_all,
    settings_for,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(120)


def finals(sink: MemorySink) -> dict[str, LifecycleEvent]:
    out: dict[str, LifecycleEvent] = {}
    for event in sink.events:
        if event.final:
            assert event.request_id not in out, f"two final events for {event.request_id}"
            out[event.request_id] = event
    return out


class WaitingProbe(RecordingSource):
    """Records, at every receive, how many unstarted messages the worker holds with it."""

    worker: Worker | None = None
    most_unstarted: int = 0

    async def receive(
        self, max_messages: int, *, wait_time_s: float, visibility_timeout_s: int
    ) -> list[QueueMessage]:
        got = await super().receive(
            max_messages, wait_time_s=wait_time_s, visibility_timeout_s=visibility_timeout_s
        )
        assert self.worker is not None
        # The worker takes what a receive returned before anything else runs: this is the
        # number of held, unstarted messages right after the take.
        held = self.worker.leases.waiting_to_start + len(got)
        self.most_unstarted = max(self.most_unstarted, held)
        return got


async def test_a_backlog_stays_in_the_queue_beyond_what_the_start_budget_serves_soon(
    start_emulator: Any, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    emulator: Emulator = await start_emulator(
        agent_delay_s=(0.05, 0.1), max_concurrent_calls=None, quotas_enabled=False
    )
    queue, dlq = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, queue, [request_body(f"bl-{i:03d}") for i in range(40)])
    sink = MemorySink()
    settings = settings_for(
        emulator.url,
        sqs_server.url,
        queue,
        queue={"max_waiting_to_start": 3},
        connect={"start_webrtc_contact_rate": 20.0, "start_webrtc_contact_burst": 2.0},
    )
    async with open_worker(settings, extra_sinks=[sink]) as worker:
        probe = WaitingProbe(worker.source)
        probe.worker = worker
        worker.source = probe
        assert worker.options.max_waiting_to_start == 3
        await worker.run(drain=True)

    assert {rid: e.type for rid, e in finals(sink).items()} == {
        f"bl-{i:03d}": EventType.SCREEN_SHARING_STARTED for i in range(40)
    }
    assert 1 <= probe.most_unstarted <= 3
    assert await queue_counts(sqs_client, dlq) == (0, 0)
    started = await EmulatorControl(emulator.url).op_stats("StartWebRTCContact")
    assert started["successes"] == 40


async def test_at_the_concurrent_call_cap_one_probe_finds_capacity_and_nothing_gives_up(
    start_emulator: Any, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    # Three calls at once; each call lasts 0.6-1 s after its agent connects.
    emulator: Emulator = await start_emulator(
        agent_delay_s=(0.05, 0.1),
        talk_time_s=(0.6, 1.0),
        abandon_rate=0.0,
        max_concurrent_calls=3,
        quotas_enabled=False,
    )
    queue, dlq = await create_queue_with_dlq(sqs_client)
    ids = [f"cap-{i:02d}" for i in range(15)]
    for rid in ids:  # one at a time: each has its own SentTimestamp
        await sqs_client.send_message(QueueUrl=queue, MessageBody=request_body(rid))
    sink = MemorySink()
    settings = settings_for(
        emulator.url,
        sqs_server.url,
        queue,
        queue={"max_waiting_to_start": 4},
        connect={"start_webrtc_contact_rate": 50.0, "capacity_max_wait_s": 60},
    )
    async with open_worker(settings, extra_sinks=[sink]) as worker:
        await worker.run(drain=True)

    # Nobody gave up: every request got its agent. Screen sharing then follows, unless a short
    # call was already over when it went (a loaded machine): that skip names the ended call.
    connected = {e.request_id for e in sink.events if e.type is EventType.AGENT_CONNECTED}
    assert connected == set(ids)
    outcomes = {rid: (e.type, e.data.get("reason")) for rid, e in finals(sink).items()}
    shared_or_call_over = {
        (EventType.SCREEN_SHARING_STARTED, None),
        (EventType.SCREEN_SHARING_SKIPPED, "contact_ended"),
    }
    assert set(outcomes) == set(ids)
    assert set(outcomes.values()) <= shared_or_call_over, outcomes
    stats = await EmulatorControl(emulator.url).op_stats("StartWebRTCContact")
    # Every waiting request retrying on its own spent most calls on refusals (92 % before);
    # one probe at a time keeps refusals to a fraction of the calls.
    assert stats["successes"] == len(ids)
    assert stats["concurrency_limited"] <= stats["successes"]
    assert await queue_counts(sqs_client, dlq) == (0, 0)
    # Oldest first among the held: the contacts' creation order follows the requests' order
    # but for the few held at once.
    contacts = await EmulatorControl(emulator.url).contacts()
    by_token = {client_token(rid, "start"): rid for rid in ids}
    order = [by_token[c["ClientToken"]] for c in sorted(contacts, key=lambda c: c["CreatedAt"])]
    displaced = [abs(order.index(rid) - ids.index(rid)) for rid in ids]
    assert max(displaced) <= 4, order


async def test_a_request_past_its_ttl_expires_without_reaching_connect(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, dlq = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, queue, [request_body("stale-1")])
    sent = time.time()  # SentTimestamp is no later than this (a loaded machine sends slowly)
    # The TTL below is two seconds: wait until this request is past it.
    await eventually(lambda: time.time() - sent > 2.1, message="the request to age past its TTL")
    sink = MemorySink()
    settings = settings_for(emulator.url, sqs_server.url, queue, queue={"request_ttl_s": 2.0})
    async with open_worker(settings, extra_sinks=[sink]) as worker:
        await worker.run(drain=True)

    got = finals(sink)
    assert got["stale-1"].type is EventType.EXPIRED
    assert got["stale-1"].data["limit"] == "request_ttl_s=2"
    assert got["stale-1"].data["age_s"] >= 2.0
    assert await EmulatorControl(emulator.url).contacts() == []
    assert await queue_counts(sqs_client, queue) == (0, 0)
    assert await queue_counts(sqs_client, dlq) == (0, 0)


async def test_a_request_past_its_expires_at_expires_and_names_that_limit(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    await send_all(
        sqs_client,
        queue,
        [request_body("gone-1", ExpiresAt=past), request_body("there-1", ExpiresAt=later)],
    )
    sink = MemorySink()
    settings = settings_for(emulator.url, sqs_server.url, queue, queue={"request_ttl_s": 0})
    async with open_worker(settings, extra_sinks=[sink]) as worker:
        await worker.run(drain=True)

    got = finals(sink)
    assert got["gone-1"].type is EventType.EXPIRED
    assert got["gone-1"].data["limit"].startswith("ExpiresAt=")
    assert got["there-1"].type is EventType.SCREEN_SHARING_STARTED
    assert len(await EmulatorControl(emulator.url).contacts()) == 1


async def test_a_redelivered_request_past_its_ttl_resumes_its_contact(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client, max_receive_count=5)
    await send_all(sqs_client, queue, [request_body("again-1")])
    sent = time.time()  # SentTimestamp is no later than this
    # A first delivery that started the contact, then died (the message comes back).
    first = await sqs_client.receive_message(QueueUrl=queue, VisibilityTimeout=0)
    assert len(first["Messages"]) == 1
    request = parse_request(first["Messages"][0]["Body"])
    connect = EmulatorControl(emulator.url)
    async with open_worker(
        settings_for(emulator.url, sqs_server.url, queue), extra_sinks=[]
    ) as worker:
        started = await worker.engine.gateway.start_webrtc_contact(
            request.start_webrtc_contact_params(client_token("again-1", "start")),
            request_id="again-1",
        )
    # Wait until the request is past the one-second TTL below.
    await eventually(lambda: time.time() - sent > 1.1, message="the request to age past its TTL")
    sink = MemorySink()
    settings = settings_for(emulator.url, sqs_server.url, queue, queue={"request_ttl_s": 1.0})
    async with open_worker(settings, extra_sinks=[sink]) as worker:
        await worker.run(drain=True)

    got = finals(sink)
    assert got["again-1"].type is EventType.SCREEN_SHARING_STARTED
    assert got["again-1"].contact_id == started.contact_id
    assert len(await connect.contacts()) == 1


def test_an_invalid_expires_at_is_a_field_error() -> None:
    from orchestrator.engine.request import RequestRejected  # noqa: PLC0415

    for bad in ("tomorrow", "2026-01-01T12:00:00", 1767268800):  # no time; no zone; a number
        with pytest.raises(RequestRejected) as info:
            parse_request(request_body("bad-exp", ExpiresAt=bad))
        assert [e.field for e in info.value.errors] == ["ExpiresAt"]


# -- deployment faults -------------------------------------------------------------------------


async def _fault_run(worker: Worker, sink: MemorySink, *, until: Any, fix: Any = None) -> None:
    """Run the worker until `until()` holds, apply `fix`, then drain."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        await eventually(until, within=30, message="the deployment fault to be reported")
        assert not worker.readiness.ready
        if fix is None:
            worker.stop()
            return
        await fix()
        await eventually(
            lambda: any(e.final for e in sink.events), within=30, message="a final event"
        )
        worker.stop()


@contextlib.asynccontextmanager
async def answering(status: int, body: str, headers: dict[str, str]) -> AsyncIterator[str]:
    """A server on loopback that answers every request the same way: a stand-in at the network
    boundary for an endpoint that refuses (IAM) or is not Connect at all (a proxy's page)."""

    async def answer(_request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def _refused_by(endpoint: str, sqs_server: LocalSqsServer, sqs_client: SQSClient) -> str:
    """Run one request against `endpoint`; return the readiness reason. Asserts nothing ended."""
    queue, dlq = await create_queue_with_dlq(sqs_client, max_receive_count=2)
    await send_all(sqs_client, queue, [request_body("refused-1")])
    sink = MemorySink()
    settings = settings_for(endpoint, sqs_server.url, queue)
    async with open_worker(settings, extra_sinks=[sink]) as worker:
        await _fault_run(
            worker,
            sink,
            until=lambda: (
                worker.metrics.value("orchestrator_deployment_faults_total", {"reason": "connect"})
                >= 2
            ),
        )
        reason = worker.readiness.snapshot()["deployment"].reason or ""
    assert not [e for e in sink.events if e.final]
    # The message went back for another worker; nothing reached the dead-letter queue.
    assert await queue_counts(sqs_client, dlq) == (0, 0)
    assert sum(await queue_counts(sqs_client, queue)) == 1
    return reason


async def test_access_denied_ends_no_request_and_fails_readiness(
    sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    denied = json.dumps({"Message": "User is not authorized to perform connect:StartWebRTCContact"})
    headers = {"x-amzn-ErrorType": "AccessDeniedException", "x-amzn-RequestId": "r-1"}
    async with answering(403, denied, headers) as endpoint:
        reason = await _refused_by(endpoint, sqs_server, sqs_client)
    assert "AccessDeniedException" in reason


async def test_an_endpoint_that_is_not_connect_ends_no_request(
    sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    page = "<html><h1>Not Found</h1></html>"
    async with answering(404, page, {"Content-Type": "text/html"}) as endpoint:
        reason = await _refused_by(endpoint, sqs_server, sqs_client)
    assert "404" in reason


class DownSink:
    """An event sink that is down until `up` is set (a real sink failing after its retries)."""

    name = "down"

    def __init__(self) -> None:
        self.up = False

    async def publish(self, events: Any) -> None:
        if not self.up:
            raise SinkError("events topic unreachable")


def sink_faults(worker: Worker) -> float:
    return worker.metrics.value("orchestrator_deployment_faults_total", {"reason": "sink"})


async def test_a_sink_that_stays_down_ends_no_request_and_the_request_completes_when_it_is_back(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, dlq = await create_queue_with_dlq(sqs_client, max_receive_count=2)
    await send_all(sqs_client, queue, [request_body("sink-1")])
    down = DownSink()
    sink = MemorySink()
    settings = settings_for(emulator.url, sqs_server.url, queue)
    async with open_worker(settings, extra_sinks=[down, sink]) as worker:

        async def back_up() -> None:
            down.up = True

        await _fault_run(
            worker,
            sink,
            until=lambda: sink_faults(worker) >= 2,
            fix=back_up,
        )
        assert worker.readiness.ready
    assert {rid: e.type for rid, e in finals(sink).items()} == {
        "sink-1": EventType.SCREEN_SHARING_STARTED
    }
    assert await queue_counts(sqs_client, queue) == (0, 0)
    assert await queue_counts(sqs_client, dlq) == (0, 0)


async def test_a_full_worker_waits_quietly_once_a_deployment_fault_has_cleared(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    """Admission lets one request wait at a time; the first meets a sink that is down, which
    then comes back. The worker, full again at once, must wait for room, not spin on the
    cleared fault (which starved every lifecycle before)."""
    queue, _ = await create_queue_with_dlq(sqs_client, max_receive_count=5)
    ids = [f"after-fault-{i}" for i in range(4)]
    await send_all(sqs_client, queue, [request_body(rid) for rid in ids])
    down = DownSink()
    sink = MemorySink()
    settings = settings_for(emulator.url, sqs_server.url, queue, queue={"max_waiting_to_start": 1})
    async with open_worker(settings, extra_sinks=[down, sink]) as worker:
        assert worker.options.max_waiting_to_start == 1
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: worker.run(drain=True))
            await eventually(lambda: sink_faults(worker) >= 1, within=30, message="a sink fault")
            down.up = True
    assert {rid: e.type for rid, e in finals(sink).items()} == dict.fromkeys(
        ids, EventType.SCREEN_SHARING_STARTED
    )
    assert worker.readiness.ready


async def test_a_rejection_waits_out_a_sink_that_is_down_and_is_emitted_once(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, dlq = await create_queue_with_dlq(sqs_client, max_receive_count=3)
    poison = json.dumps({"RequestId": "poison-down", "ParticipantDetails": {"DisplayName": ""}})
    await send_all(sqs_client, queue, [poison])
    down = DownSink()
    sink = MemorySink()
    settings = settings_for(emulator.url, sqs_server.url, queue)
    async with (
        open_worker(settings, extra_sinks=[down, sink]) as worker,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(lambda: worker.run(drain=True))
        await eventually(lambda: sink_faults(worker) >= 1, within=30, message="a sink fault")
        assert not worker.readiness.ready
        # Held on its first receive while the sinks are down: not handed back yet.
        assert worker.in_flight == 1
        down.up = True
    # One event (a sink that was up meanwhile may have been handed it more than once, under
    # the same id), although the message was received three times.
    assert {(e.type, e.id) for e in sink.events} == {
        (EventType.REJECTED, "poison-down:request.rejected")
    }
    handed_back = {"reason": "rejected"}
    assert worker.metrics.value("orchestrator_messages_handed_back_total", handed_back) == 3
    assert worker.readiness.ready
    assert await drain_bodies(sqs_client, dlq) == [poison]


class PollProbe(RecordingSource):
    polling: bool = False

    async def receive(
        self, max_messages: int, *, wait_time_s: float, visibility_timeout_s: int
    ) -> list[QueueMessage]:
        self.polling = True
        try:
            return await super().receive(
                max_messages, wait_time_s=wait_time_s, visibility_timeout_s=visibility_timeout_s
            )
        finally:
            self.polling = False


async def test_a_stop_during_a_long_poll_hands_back_what_the_poll_returns(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, dlq = await create_queue_with_dlq(sqs_client, max_receive_count=5)
    settings = settings_for(emulator.url, sqs_server.url, queue, queue={"wait_time_s": 3})
    async with open_worker(settings) as worker:
        probe = PollProbe(worker.source)
        worker.source = probe
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            # The worker is inside a long poll: stop it, then the message arrives.
            await eventually(lambda: probe.polling or None, message="a pending receive")
            worker.stop()
            await send_all(sqs_client, queue, [request_body("late-1")])
    # Whatever that abandoned-before poll took went back at once, not after a timeout: the
    # message is visible now, with one receive at most, and nothing was started for it.
    got = await sqs_client.receive_message(
        QueueUrl=queue, MessageSystemAttributeNames=["ApproximateReceiveCount"]
    )
    assert [json.loads(m["Body"])["RequestId"] for m in got["Messages"]] == ["late-1"]
    assert int(got["Messages"][0]["Attributes"]["ApproximateReceiveCount"]) <= 2
    assert await EmulatorControl(emulator.url).contacts() == []
    assert await queue_counts(sqs_client, dlq) == (0, 0)


@dataclass
class AskingSource(RecordingSource):
    """Records the visibility timeout each receive asks for."""

    asked: list[int] = field(default_factory=list)

    async def receive(
        self, max_messages: int, *, wait_time_s: float, visibility_timeout_s: int
    ) -> list[QueueMessage]:
        self.asked.append(visibility_timeout_s)
        return await super().receive(
            max_messages, wait_time_s=wait_time_s, visibility_timeout_s=visibility_timeout_s
        )


async def test_unstarted_messages_are_hidden_briefly_and_started_ones_for_the_full_timeout(
    start_emulator: Any, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    """A crashed worker's unstarted messages come back after `unstarted_visibility_timeout_s`;
    once a contact starts, the heartbeat keeps its message hidden for `visibility_timeout_s`."""
    emulator: Emulator = await start_emulator(agent_delay_s=(5.0, 5.0))
    queue, _ = await create_queue_with_dlq(sqs_client, max_receive_count=5)
    await send_all(sqs_client, queue, [request_body("short-1")])
    settings = settings_for(
        emulator.url,
        sqs_server.url,
        queue,
        queue={"visibility_timeout_s": 120, "unstarted_visibility_timeout_s": 4},
    )
    async with open_worker(settings) as worker:
        probe = AskingSource(worker.source, extension_s=(120, 4))
        worker.source = probe
        await worker.run(drain=True)

    assert probe.asked and set(probe.asked) == {4}
    changes = [args[1] for _, kind, args in probe.calls if kind == "visibility"]
    # The lifecycle outlived half the short timeout once its contact had started (the agent
    # takes 5 s): its message was extended to the full timeout, and never handed back.
    assert 120 in changes
    assert set(changes) <= {120, 4}
