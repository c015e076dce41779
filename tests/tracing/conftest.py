"""Tracing tests: the SDK's in-memory exporter behind the facade, one per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import tracing
from orchestrator.testing.emulator import Emulator
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.tracing.otel import OtelTracer

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


class Spans:
    """What the test's tracer finished, by name and by trace."""

    def __init__(self, exporter: InMemorySpanExporter, tracer: OtelTracer) -> None:
        self.exporter, self.tracer = exporter, tracer

    def all(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [s for s in self.all() if s.name.startswith(prefix)]

    def in_trace(self, trace_id: int) -> list[ReadableSpan]:
        return [s for s in self.all() if s.context is not None and s.context.trace_id == trace_id]


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spans]:
    """Tracing on for the test, every finished span kept in memory."""
    monkeypatch.delenv("OTEL_SDK_DISABLED")  # the suite's default (tests/conftest.py)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = OtelTracer(provider)
    previous = tracing.install(tracer)
    try:
        yield Spans(exporter, tracer)
    finally:
        tracing.install(previous)
        provider.shutdown()


async def events_emulator(
    start_emulator: Callable[..., Any], sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> tuple[Emulator, str]:
    """An emulator that publishes its contact events to a fresh queue: (it, the queue)."""
    created = await sqs_client.create_queue(QueueName=f"contact-events-{uuid.uuid4().hex[:12]}")
    events = created["QueueUrl"]
    emulator: Emulator = await start_emulator(
        agent_delay_s=(0.3, 0.8), events_queue_url=events, events_endpoint_url=sqs_server.url
    )
    return emulator, events
