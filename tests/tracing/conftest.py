"""Tracing tests: the SDK's in-memory exporter behind the facade, one per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator import tracing
from orchestrator.tracing.otel import OtelTracer


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
