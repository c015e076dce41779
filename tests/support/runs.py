"""Running a real worker (drain mode) over a list of bodies and collecting what it left behind."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TextIO

from aiobotocore.session import get_session

from orchestrator.daemon.assembly import open_worker
from orchestrator.metrics import Metrics
from orchestrator.sinks import EventSink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from orchestrator.testing.queues import (
    create_queue,
    create_queue_with_dlq,
    drain_bodies,
    drain_messages,
    final_types,
    queue_counts,
    send_all,
)
from orchestrator.testing.requests import REGION
from tests.reliability.logcapture import captured_logs, records
from tests.support.peers import emulator_config
from tests.support.worker import settings_for

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


@dataclass
class WorkerRun:
    """What one drain-mode run left: events from the SQS sink, logs, queues, Connect's truth."""

    message_ids: list[str]
    events: list[dict[str, Any]]
    #: The SQS event messages as sent: (body, message attributes).
    event_messages: list[tuple[str, dict[str, Any]]]
    log_text: str
    logs: list[dict[str, Any]]
    dead_letters: list[str]
    left_in_queue: tuple[int, int]
    contacts: list[dict[str, Any]]
    metrics: Metrics

    def final_types(self) -> dict[str, set[str]]:
        return final_types(self.events)

    def types_of(self, request_id: str) -> set[str]:
        return {e["type"] for e in self.events if e["request_id"] == request_id}

    def logged(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.logs if r.get("event") == name]


@dataclass(frozen=True)
class RunOptions:
    max_receive_count: int = 2
    #: Where logs go (default: captured into `WorkerRun.log_text`), at which level, and whether
    #: botocore's loggers are forced to DEBUG too.
    log_stream: TextIO | None = None
    log_level: str = "INFO"
    library_debug: bool = False
    extra_sinks: Sequence[EventSink] = ()
    #: Settings sections patched over `settings_for`'s.
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


async def run_worker_on(
    sqs_url: str,
    bodies: list[str],
    *,
    emulator: Emulator | None = None,
    options: RunOptions | None = None,
    **sections: Any,
) -> WorkerRun:
    """A fresh request queue (redrive to a fresh DLQ), a fresh events queue, one real worker in
    drain mode against the Connect emulator (a fresh, fast one unless given)."""
    opts = options or RunOptions()
    if sections:
        opts = replace(opts, sections={**opts.sections, **sections})
    async with get_session().create_client("sqs", region_name=REGION, endpoint_url=sqs_url) as sqs:
        if emulator is None:
            async with Emulator(emulator_config()) as fresh:
                return await _run(sqs, sqs_url, fresh, bodies, opts)
        return await _run(sqs, sqs_url, emulator, bodies, opts)


async def _run(
    sqs: SQSClient, sqs_url: str, emulator: Emulator, bodies: list[str], opts: RunOptions
) -> WorkerRun:
    queue, dlq = await create_queue_with_dlq(sqs, max_receive_count=opts.max_receive_count)
    events_queue = await create_queue(sqs, "events")
    message_ids = await send_all(sqs, queue, bodies)
    sections = {name: dict(values) for name, values in opts.sections.items()}
    sections["events"] = {"sqs_queue_url": events_queue, **sections.get("events", {})}
    settings = settings_for(emulator.url, sqs_url, queue, **sections)
    captured = io.StringIO()
    stream = opts.log_stream if opts.log_stream is not None else captured
    with captured_logs(stream=stream, level=opts.log_level, library_debug=opts.library_debug):
        async with open_worker(settings, extra_sinks=opts.extra_sinks) as worker:
            await worker.run(drain=True)
    messages = await drain_messages(sqs, events_queue)
    text = captured.getvalue()
    return WorkerRun(
        message_ids=message_ids,
        events=[json.loads(body) for body, _ in messages],
        event_messages=messages,
        log_text=text,
        logs=records(text),
        dead_letters=await drain_bodies(sqs, dlq),
        left_in_queue=await queue_counts(sqs, queue),
        contacts=await EmulatorControl(emulator.url).contacts(),
        metrics=worker.metrics,
    )
