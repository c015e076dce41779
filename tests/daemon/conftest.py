"""The daemon tests' repeated preamble as one fixture: a fresh request queue with a DLQ, the
bodies sent, one real worker run in drain mode against the emulator, what it left behind."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.worker import Worker
from orchestrator.engine.events import EventType
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.queues import create_queue_with_dlq, queue_counts, send_all
from tests.support import settings_for

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


def final_events(sink: MemorySink) -> dict[str, EventType]:
    """Each request's final event type; two different finals for one request fail the test."""
    out: dict[str, EventType] = {}
    for event in sink.events:
        if event.final:
            assert out.get(event.request_id, event.type) == event.type, "conflicting finals"
            out[event.request_id] = event.type
    return out


@dataclass
class Drained:
    """One drain-mode run: the worker (its metrics), the events it emitted, its queues."""

    worker: Worker
    sink: MemorySink
    queue: str
    dlq: str
    sqs: SQSClient

    def finals(self) -> dict[str, EventType]:
        return final_events(self.sink)

    async def left(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """(request queue, dead-letter queue) counts: (visible, in flight) each."""
        return await queue_counts(self.sqs, self.queue), await queue_counts(self.sqs, self.dlq)


DrainedWorker = Callable[..., Awaitable[Drained]]


@pytest.fixture
def drained_worker(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> DrainedWorker:
    """`await drained_worker(bodies, max_receive_count=2, fifo=False, emulator=None,
    **settings_sections)`: run a real worker over `bodies` until the queue is empty."""

    async def run(
        bodies: Sequence[str],
        *,
        max_receive_count: int = 2,
        fifo: bool = False,
        emulator_url: str | None = None,
        **sections: Any,
    ) -> Drained:
        queue, dlq = await create_queue_with_dlq(
            sqs_client, max_receive_count=max_receive_count, fifo=fifo
        )
        await send_all(sqs_client, queue, list(bodies))
        sink = MemorySink()
        settings = settings_for(emulator_url or emulator.url, sqs_server.url, queue, **sections)
        async with open_worker(settings, extra_sinks=[sink]) as worker:
            await worker.run(drain=True)
        return Drained(worker, sink, queue, dlq, sqs_client)

    return run
