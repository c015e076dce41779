"""Running the real worker in the benchmark's process: its settings, queues, a counting sink, a
deadline, its logs."""

from __future__ import annotations

import contextlib
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from aiobotocore.session import AioSession

from orchestrator.connect.operations import Operation
from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.logs import configure_logging
from orchestrator.daemon.settings import Settings
from orchestrator.daemon.worker import Worker
from orchestrator.engine.events import LifecycleEvent
from orchestrator.metrics import Metrics
from orchestrator.sinks import EventSink
from orchestrator.sqs import aws_client_config
from orchestrator.testing.memory_queue import MemoryQueue
from orchestrator.testing.queues import create_queue_with_dlq, send_all
from orchestrator.testing.requests import REGION

from .harness import Quotas


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
        try:
            yield
        finally:  # the file closes: later records (matplotlib's) go to stderr
            configure_logging(level="WARNING", json_output=False, stream=sys.stderr)


def memory_settings(
    run: str,
    contacts: int,
    endpoint_url: str,
    quotas: Quotas,
    /,
    *,
    watch: Mapping[str, Any] | None = None,
    contact_events: Mapping[str, Any] | None = None,
    queue_position: Mapping[str, Any] | None = None,
) -> Settings:
    """The settings of a worker fed by a `MemoryQueue` (`memory_worker`) that starts `contacts`
    at once on the emulator at `endpoint_url` with `quotas`."""
    connect: dict[str, Any] = {"endpoint_url": endpoint_url}
    for operation, (rate, burst) in quotas.items():
        connect[f"{Operation(operation).name.lower()}_rate"] = rate
        connect[f"{Operation(operation).name.lower()}_burst"] = burst
    return Settings(
        aws={"region": REGION},
        # The queue's URL (a reserved .invalid name) is never called.
        queue={"url": f"http://memory.invalid/{run}", "wait_time_s": 1,
               "max_in_flight": max(1000, contacts)},
        connect=connect,
        observability={"enabled": False},
        watch=dict(watch or {}),
        contact_events=dict(contact_events or {}),
        queue_position=dict(queue_position or {}),
    )  # fmt: skip


async def sqs_queue_with(session: AioSession, sqs_url: str, bodies: Sequence[str]) -> str:
    """A fresh request queue on the SQS server holding `bodies`."""
    async with session.create_client(
        "sqs", region_name=REGION, endpoint_url=sqs_url, config=aws_client_config()
    ) as sqs:
        # A dead-letter queue after 5 receives, as deployed.
        queue_url, _ = await create_queue_with_dlq(sqs, max_receive_count=5, prefix="bench")
        await send_all(sqs, queue_url, bodies)
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
