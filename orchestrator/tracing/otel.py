"""The tracing facade on OpenTelemetry's SDK (the `otel` extra). Imported only by
`tracing.from_environment`, and only when the extra is installed and not disabled.

Configuration is the SDK's standard environment: `OTEL_TRACES_EXPORTER` (`otlp`, the default,
over HTTP/protobuf; `console`; `none`; a comma-separated list), `OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_SERVICE_NAME` (default `contact-orchestrator`),
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*`.
The provider is this process's own (never OpenTelemetry's global one), so tests can build one per
test with an in-memory exporter.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from importlib.metadata import version
from typing import Unpack, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from orchestrator.errors import ConfigError
from orchestrator.tracing import (
    RemoteContext,
    Span,
    SpanKind,
    SpanOptions,
    SpanRegistry,
)

#: The service name when `OTEL_SERVICE_NAME` (or `OTEL_RESOURCE_ATTRIBUTES`) names none.
DEFAULT_SERVICE_NAME = "contact-orchestrator"
_KINDS = {
    SpanKind.INTERNAL: trace.SpanKind.INTERNAL,
    SpanKind.CLIENT: trace.SpanKind.CLIENT,
    SpanKind.PRODUCER: trace.SpanKind.PRODUCER,
    SpanKind.CONSUMER: trace.SpanKind.CONSUMER,
}


def _span_context(remote: RemoteContext) -> trace.SpanContext:
    state = trace.TraceState.from_header([remote.tracestate]) if remote.tracestate else None
    return trace.SpanContext(
        remote.trace_id,
        remote.span_id,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED if remote.sampled else 0),
        trace_state=state,
    )


class OtelTracer:
    """`tracing.Tracer` on an SDK `TracerProvider` (built by `from_environment`, or by a test
    with an in-memory exporter)."""

    enabled = True

    def __init__(self, provider: TracerProvider, *, registry_limit: int = 10_000) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("contact-orchestrator", version("contact-orchestrator"))
        self._registry = SpanRegistry(registry_limit)

    def span(self, name: str, **options: Unpack[SpanOptions]) -> AbstractContextManager[Span]:
        context: otel_context.Context | None = None
        parent = options.get("parent")
        if parent is not None:
            context = trace.set_span_in_context(trace.NonRecordingSpan(_span_context(parent)))
        elif options.get("root", False):
            context = otel_context.Context()
        scope = self._tracer.start_as_current_span(
            name,
            context=context,
            kind=_KINDS[options.get("kind", SpanKind.INTERNAL)],
            attributes=options.get("attributes"),
            links=[trace.Link(_span_context(link)) for link in options.get("links", ())] or None,
            start_time=options.get("start_ns"),
        )
        return cast(AbstractContextManager[Span], scope)

    def current(self) -> Span:
        return cast(Span, trace.get_current_span())

    def current_context(self) -> RemoteContext | None:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        state = context.trace_state.to_header() if context.trace_state else None
        return RemoteContext(
            context.trace_id, context.span_id, context.trace_flags.sampled, state or None
        )

    def registry(self) -> SpanRegistry:
        return self._registry

    def shutdown(self) -> None:
        self.provider.shutdown()


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter | None:
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        protocol = environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
        )
        if protocol.strip() not in ("", "http/protobuf"):
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: the otel extra exports over "
                "http/protobuf only (port 4318 on a collector)"
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        return OTLPSpanExporter()
    raise ConfigError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (otlp, console or none)")


def from_environment(environ: Mapping[str, str]) -> OtelTracer:
    """A tracer configured by the standard `OTEL_*` environment (see the module's docstring)."""
    resource = Resource.create({SERVICE_VERSION: version("contact-orchestrator")})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_SAMPLER
    names = environ.get("OTEL_TRACES_EXPORTER", "otlp") or "otlp"
    for name in (n.strip().lower() for n in names.split(",") if n.strip()):
        exporter = _exporter(name, environ)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
    return OtelTracer(provider)
