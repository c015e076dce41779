"""A real worker that answers to reply queues, running for the whole test, and clients for it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from orchestrator.client import CallClient
from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.worker import Worker
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.queues import create_queue_with_dlq
from orchestrator.testing.requests import REGION
from tests.support import settings_for

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

#: The reply queues the test workers allow: the clients' own (their default prefix).
ALLOWED = "arn:aws:sqs:us-east-1:*:orchestrator-replies-*"


@dataclass
class Live:
    """A worker running until the block ends: its configured sink (a memory sink carrying the
    connection data, as the SQS sink would) and its request queue."""

    worker: Worker
    sink: MemorySink
    queue: str
    sqs_url: str

    def client(self, **options: Any) -> CallClient:
        return CallClient(
            self.queue, region=REGION, endpoint_url=self.sqs_url, wait_time_s=1, **options
        )

    def events_of(self, request_id: str) -> list[dict[str, Any]]:
        return [r for r in self.sink.records() if r["request_id"] == request_id]


LiveWorker = Callable[..., contextlib.AbstractAsyncContextManager[Live]]


@pytest.fixture
def live_worker(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> LiveWorker:
    """`async with live_worker(emulator=None, **settings_sections) as live:` a worker that
    allows `ALLOWED` reply queues, on a fresh request queue."""

    @contextlib.asynccontextmanager
    async def run(emulator_url: str | None = None, **sections: Any) -> AsyncIterator[Live]:
        queue, _ = await create_queue_with_dlq(sqs_client, max_receive_count=3)
        events = {"reply_to_allowed": [ALLOWED], **sections.pop("events", {})}
        settings = settings_for(
            emulator_url or emulator.url, sqs_server.url, queue, events=events, **sections
        )
        sink = MemorySink(include_connection_data=True)
        async with (
            open_worker(settings, extra_sinks=[sink]) as worker,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(worker.run)
            try:
                yield Live(worker, sink, queue, sqs_server.url)
            finally:
                worker.stop()
                worker.stop()

    return run
