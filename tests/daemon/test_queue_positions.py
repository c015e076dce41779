"""An assembled worker whose role may not call GetContactMetrics: positions turn themselves off
with one warning, the worker stays ready and every call goes on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest
from structlog.testing import capture_logs

from orchestrator.daemon.assembly import open_worker
from orchestrator.engine.events import EventType
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.queues import create_queue_with_dlq, send_all
from orchestrator.testing.requests import request_body
from tests.support import eventually, settings_for

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(90)


async def test_access_denied_positions_leave_the_worker_ready_and_calls_going(
    start_emulator: Any, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    emulator: Emulator = await start_emulator(
        agents=1,
        handle_time_s=(600.0, 600.0),
        patience_s=(600.0, 600.0),
        background_contacts=2,
        metrics_access_denied=True,
    )
    control = EmulatorControl(emulator.url)
    queue, _ = await create_queue_with_dlq(sqs_client)
    ids = ["denied-1", "denied-2"]
    await send_all(sqs_client, queue, [request_body(rid) for rid in ids])
    sink = MemorySink()
    settings = settings_for(emulator.url, sqs_server.url, queue)
    with capture_logs() as logs:
        async with (
            open_worker(settings, extra_sinks=[sink]) as worker,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(worker.run)
            await eventually(
                lambda: any(e["event"] == "queue_position.unavailable" for e in logs), within=30
            )
            assert worker.readiness.ready
            for contact in await control.contacts():
                await control.disconnect(contact["ContactId"])
            await eventually(lambda: len([e for e in sink.events if e.final]) == 2, within=30)
            assert worker.readiness.ready
            worker.stop()
    warnings = [e for e in logs if e["event"] == "queue_position.unavailable"]
    assert len(warnings) == 1
    assert not [e for e in sink.events if e.type is EventType.QUEUE_POSITION]
    assert {e.type for e in sink.events if e.final} == {EventType.DISCONNECTED}
    assert (await control.op_stats("GetContactMetrics"))["calls"] == 1
