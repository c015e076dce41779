"""The event-sink boundary and the sinks that need no AWS: log, JSONL file, memory, fan-out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import aiohttp
import anyio
import structlog
from botocore.exceptions import BotoCoreError, ClientError

from orchestrator import tracing
from orchestrator.engine.events import EventSink, LifecycleEvent
from orchestrator.errors import SinkError
from orchestrator.metrics import Metrics
from orchestrator.retry import RetryPolicy
from orchestrator.tracing import AttributeValue, SpanKind


class LogSink:
    """Every event as one structured log line. Never carries connection data."""

    name = "log"

    def __init__(self, logger: structlog.stdlib.BoundLogger | None = None) -> None:
        self._log = logger or structlog.get_logger("orchestrator.engine.events")

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        for event in events:
            record = event.to_dict(include_connection_data=False)
            self._log.info(
                event.type.value,
                event_id=record["id"],
                request_id=record["request_id"],
                contact_id=record["contact_id"],
                instance_id=record["instance_id"],
                final=record["final"],
                data=record["data"],
            )


class JsonlSink:
    """Appends each event as a JSON line to a file (with connection data if told: `[events]`)."""

    name = "jsonl"

    def __init__(self, path: str | Path, *, include_connection_data: bool) -> None:
        self.path = Path(path)
        self._include = include_connection_data
        self._lock = anyio.Lock()

    def _append(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(text)

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        text = "".join(e.to_json(include_connection_data=self._include) + "\n" for e in events)
        async with self._lock:
            await anyio.to_thread.run_sync(self._append, text)


class MemorySink:
    """Keeps events in a list (tests, the demo's summary)."""

    name = "memory"

    def __init__(self, *, include_connection_data: bool = False) -> None:
        self.include_connection_data = include_connection_data
        self.events: list[LifecycleEvent] = []

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        self.events.extend(events)

    def records(self) -> list[dict[str, object]]:
        return [
            e.to_dict(include_connection_data=self.include_connection_data) for e in self.events
        ]


#: What a sink failure looks like; anything else is a bug and is not retried.
SINK_FAILURES: tuple[type[BaseException], ...] = (
    SinkError,
    ClientError,
    BotoCoreError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)


def sink_policy(
    name: str, *, max_attempts: int, max_time_s: float, max_backoff_s: float
) -> RetryPolicy:
    """A sink's retries: of `SINK_FAILURES` only, the first wait 0.2 s."""
    return RetryPolicy(
        name,
        retry_on=SINK_FAILURES,
        max_attempts=max_attempts,
        max_time_s=max_time_s,
        initial_s=0.2,
        max_backoff_s=max_backoff_s,
    )


def default_sink_policy() -> RetryPolicy:
    return sink_policy("events.publish", max_attempts=5, max_time_s=30.0, max_backoff_s=5.0)


def _publish_attributes(events: Sequence[LifecycleEvent]) -> dict[str, AttributeValue]:
    if not tracing.enabled():
        return {}
    return {
        "messaging.operation.type": "send",
        "messaging.batch.message_count": len(events),
        "orchestrator.event_types": [e.type.value for e in events],
    }


class FanoutSink:
    """Delivers every event to every sink, each retried on its own; fails if any sink fails."""

    name = "fanout"

    def __init__(
        self,
        sinks: Sequence[EventSink],
        *,
        metrics: Metrics,
        policy: RetryPolicy | None = None,
    ) -> None:
        if not sinks:
            raise ValueError("FanoutSink needs at least one sink")
        self.sinks = list(sinks)
        self._policy = policy or default_sink_policy()
        self._metrics = metrics

    async def _deliver(self, sink: EventSink, events: Sequence[LifecycleEvent]) -> None:
        async def attempt() -> None:
            try:
                await sink.publish(events)
            except SINK_FAILURES:
                self._metrics.sink_failures.labels(sink.name).inc(len(events))
                raise

        with tracing.span(
            f"publish {sink.name}", kind=SpanKind.PRODUCER, attributes=_publish_attributes(events)
        ):
            try:
                await self._policy.call(attempt, context={"sink": sink.name})
            except SINK_FAILURES as exc:
                raise SinkError(f"sink {sink.name} failed: {exc}") from exc
        self._metrics.sink_publishes.labels(sink.name).inc(len(events))

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        if not events:
            return
        failures: list[SinkError] = []

        async def deliver(sink: EventSink) -> None:
            try:
                await self._deliver(sink, events)
            except SinkError as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            for sink in self.sinks:
                tg.start_soon(deliver, sink)
        if failures:
            raise SinkError("; ".join(str(f) for f in failures))
