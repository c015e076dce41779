"""Running the real worker for a benchmark: queues, settings, a counting sink, a deadline."""

from __future__ import annotations

import contextlib
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from aiobotocore.session import AioSession

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.logs import configure_logging
from orchestrator.daemon.settings import Settings
from orchestrator.daemon.sqs import sqs_client_config
from orchestrator.daemon.worker import Worker
from orchestrator.engine.events import LifecycleEvent
from orchestrator.metrics import Metrics
from orchestrator.sinks import EventSink
from orchestrator.testing.memory_queue import MemoryQueue

from .common import REGION

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


@dataclass
class FinalCounter:
    """An event sink that keeps only counts (it must not grow with the number of contacts):
    final events by type, and the monotonic time of the last one."""

    expected: int
    name: str = "bench-counter"
    finals: Counter[str] = field(default_factory=Counter)
    last_final: float | None = None
    #: Set once `expected` final events were delivered.
    all_final: anyio.Event = field(default_factory=anyio.Event)

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        now = time.monotonic()
        for event in events:
            if event.final:
                self.finals[event.type.value] += 1
                self.last_final = now
        if self.total >= self.expected:
            self.all_final.set()

    @property
    def total(self) -> int:
        return sum(self.finals.values())


@contextlib.contextmanager
def worker_logs(path: Path) -> Iterator[None]:
    """The worker's structured JSON logs go to `path` (as in production, to a stream), not to
    the benchmark's table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as stream:
        configure_logging(level="INFO", json_output=True, stream=stream)
        yield


def aio_session() -> AioSession:
    """A session with the fake credentials (also in the environment) of the local peers."""
    return AioSession()


async def create_request_queue(sqs: SQSClient, name: str) -> str:
    """A request queue with a dead-letter queue (maxReceiveCount 5), as deployed."""
    dlq = (await sqs.create_queue(QueueName=f"{name}-dlq"))["QueueUrl"]
    attrs = await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])
    arn = attrs["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 5})
    created = await sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})
    return created["QueueUrl"]


async def enqueue(sqs: SQSClient, queue_url: str, bodies: Sequence[str]) -> None:
    for start in range(0, len(bodies), 10):
        entries: list[Any] = [
            {"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])
        ]
        response = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"SendMessageBatch failed: {response['Failed']}")


async def sqs_queue_with(session: AioSession, sqs_url: str, bodies: Sequence[str]) -> str:
    """A fresh request queue on the SQS server holding `bodies`."""
    async with session.create_client(
        "sqs", region_name=REGION, endpoint_url=sqs_url, config=sqs_client_config()
    ) as sqs:
        queue_url = await create_request_queue(sqs, f"bench-{uuid.uuid4().hex[:10]}")
        await enqueue(sqs, queue_url, bodies)
    return queue_url


async def run_until(worker: Worker, done: FinalCounter, timeout_s: float) -> bool:
    """Run the worker until every expected final event was delivered (True) or the deadline
    passed (False); then stop it (in-flight lifecycles are handed back, as on shutdown)."""
    async with anyio.create_task_group() as tg:

        async def supervise() -> None:
            with anyio.move_on_after(timeout_s):
                await done.all_final.wait()
            worker.stop()
            worker.stop()  # the second stop skips the grace period: nothing is left to wait for

        tg.start_soon(supervise)
        await worker.run()
    return done.all_final.is_set()


@contextlib.asynccontextmanager
async def memory_worker(
    settings: Settings,
    *,
    session: AioSession,
    metrics: Metrics,
    extra_sinks: Sequence[EventSink],
    seed: int,
) -> AsyncIterator[tuple[Worker, MemoryQueue]]:
    """The real `Worker` and `LifecycleEngine`, assembled by
    `orchestrator.daemon.assembly.open_worker`, but fed by a `MemoryQueue` instead of SQS."""
    queue = MemoryQueue()
    async with open_worker(
        settings,
        session=session,
        metrics=metrics,
        extra_sinks=extra_sinks,
        source=queue,
        rng=random.Random(seed),
    ) as worker:
        yield worker, queue
