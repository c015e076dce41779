"""Connect unreachable for a while fails nothing: started contacts stay watched and their
messages held, queued requests stay in the queue, `/readyz` says why, the log stays short, and
once Connect answers again every request reaches its own outcome. Real worker, real SQS server,
real emulator (stopped and started again on the same address: connections are refused
meanwhile)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from structlog.testing import capture_logs

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.faults import CONNECT_UNREACHABLE, DEPLOYMENT_PART
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.sinks import MemorySink
from orchestrator.sqs import QueueMessage
from orchestrator.testing.emulator import Emulator
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

pytestmark = pytest.mark.timeout(180)

#: How long Connect stays unreachable (the retry bounds below are a few seconds).
OUTAGE_S = 20.0


@dataclass
class ReceiveClock(RecordingSource):
    """Records when each ReceiveMessage began (monotonic)."""

    began: list[float] = field(default_factory=list)
    worker: Any = None

    async def receive(
        self, max_messages: int, *, wait_time_s: float, visibility_timeout_s: int
    ) -> list[QueueMessage]:
        self.began.append(time.monotonic())
        got = await super().receive(
            max_messages, wait_time_s=wait_time_s, visibility_timeout_s=visibility_timeout_s
        )
        if self.worker is not None:
            print(
                "RECV",
                time.monotonic(),
                len(got),
                self.worker.faults.active,
                self.worker.faults._faults,
                self.worker.status.paused,
                flush=True,
            )
        return got


def started_of(sink: MemorySink) -> list[LifecycleEvent]:
    return [e for e in sink.events if e.type is EventType.STARTED]


async def test_a_connect_outage_ends_no_request_and_every_request_completes_after_it(
    start_emulator: Any, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    # Agents come 12-16 s after each contact starts: during the outage for the first six.
    emulator: Emulator = await start_emulator(
        agent_delay_s=(12.0, 16.0), talk_time_s=(90.0, 90.0), max_concurrent_calls=None
    )
    # Two receives and a message is dead-lettered: burning receives would show at once.
    queue, dlq = await create_queue_with_dlq(sqs_client, max_receive_count=2)
    waiting = [f"waiting-{i}" for i in range(6)]
    queued = [f"queued-{i}" for i in range(6)]
    sink = MemorySink()
    settings = settings_for(
        emulator.url,
        sqs_server.url,
        queue,
        connect={
            "retry_max_attempts": 2,
            "retry_max_time_s": 1,
            "outage_max_backoff_s": 2,
            "outage_summary_interval_s": 5,
        },
        watch={"max_wait_s": 120},
    )
    await send_all(sqs_client, queue, [request_body(r) for r in waiting])
    with capture_logs() as logs:
        async with open_worker(settings, extra_sinks=[sink]) as worker:
            probe = ReceiveClock(worker.source)
            worker.source = probe
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await eventually(
                    lambda: len(started_of(sink)) == len(waiting),
                    within=30,
                    message="every waiting contact started",
                )
                await emulator.stop()
                down_at = time.monotonic()

                def held_by_outage() -> bool:
                    report = worker.readiness.snapshot().get(DEPLOYMENT_PART)
                    return report is not None and CONNECT_UNREACHABLE in (report.reason or "")

                await eventually(held_by_outage, within=30, message="the outage declared")
                assert not worker.readiness.ready
                # The receive loop holds back (once a long poll pending at the declaration ends).
                await eventually(lambda: worker.status.paused, within=30, message="paused")
                declared_at = time.monotonic()
                # Requests sent meanwhile stay in the queue.
                await send_all(sqs_client, queue, [request_body(r) for r in queued])
                # Every watch waits in place; nothing is handed back or ended.
                await eventually(
                    lambda: (
                        worker.faults.held == len(waiting)
                        and time.monotonic() - down_at >= OUTAGE_S
                    ),
                    within=OUTAGE_S + 30,
                    message="every watch held for the whole outage",
                )
                assert held_by_outage()
                assert not [e for e in sink.events if e.final]
                assert worker.in_flight == len(waiting)
                # Not ready, so no new work: no ReceiveMessage began while the outage lasted.
                received_during = [t for t in probe.began if t > declared_at]
                await emulator.start()
                up_at = time.monotonic()
                assert received_during == []

                everyone = waiting + queued
                await eventually(
                    lambda: {e.request_id for e in sink.events if e.final} == set(everyone),
                    within=90,
                    message="every request's final event",
                )
                assert worker.readiness.snapshot()[DEPLOYMENT_PART].ok
                worker.stop()

    finals = {e.request_id: e for e in sink.events if e.final}
    assert len([e for e in sink.events if e.final]) == len(everyone)
    # The right outcome for each: agents came in time, so each call reached screen sharing,
    # and each final event names its contact.
    assert {r: e.type for r, e in finals.items()} == dict.fromkeys(
        everyone, EventType.SCREEN_SHARING_STARTED
    )
    started = {e.request_id: e.contact_id for e in started_of(sink)}
    assert all(finals[r].contact_id == started[r] for r in everyone)
    # One contact per request, nothing dead-lettered, nothing left in the queue.
    assert len(emulator.state.center.contacts) == len(everyone)
    assert await queue_counts(sqs_client, dlq) == (0, 0)
    assert await queue_counts(sqs_client, queue) == (0, 0)
    # The log stays short: a summary line every few seconds, no warning per retry.
    during = [line for line in logs if line.get("log_level") in {"warning", "error", "critical"}]
    summaries = [line for line in during if line["event"] == "connect.unreachable"]
    assert 2 <= len(summaries) <= (up_at - down_at) / 5 + 3
    retry_warnings = [line for line in during if line["event"] == "retry.scheduled"]
    # Each watch's first failures are warned about before the outage is declared, no more.
    assert len(retry_warnings) <= 2 * len(waiting)
    assert [line["event"] for line in logs if line["event"] == "connect.reachable"]
