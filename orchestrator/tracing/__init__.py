"""The tracing facade: the only tracing API the rest of the orchestrator calls.

By default every call here is a no-op that allocates nothing (one attribute lookup and one call):
`span(...)` hands out a shared do-nothing scope, `trace_id()` is None, log lines and events are
left alone. `configured()` (the CLI, once, at start-up) installs the real implementation
(`orchestrator.tracing.otel`, OpenTelemetry's SDK) when the `otel` extra is importable and
`OTEL_SDK_DISABLED` is not true; without it nothing from `opentelemetry` is ever imported.

The SDK reads its configuration from the standard `OTEL_*` environment (exporter, endpoint,
service name, sampler): see docs/tracing.md.

```python
with tracing.span("Connect.DescribeContact", kind=SpanKind.CLIENT, attributes={...}) as span:
    span.set_attribute("aws.request_id", rid)
tracing.add_event("rate_budget.waited", wait_s=0.4)
```
"""

from __future__ import annotations

import contextlib
import enum
import os
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypedDict, Unpack

from orchestrator.tracing.context import RemoteContext, parse_traceparent, parse_xray

__all__ = [
    "NOOP",
    "AttributeValue",
    "NoopTracer",
    "RemoteContext",
    "Span",
    "SpanKind",
    "SpanOptions",
    "SpanRegistry",
    "Tracer",
    "add_event",
    "add_trace_ids",
    "configured",
    "current",
    "enabled",
    "inject",
    "install",
    "parse_traceparent",
    "parse_xray",
    "recall",
    "release",
    "remember",
    "span",
    "trace_id",
    "tracer",
    "waiting",
]

AttributeValue = str | bool | int | float | Sequence[str]


class SpanKind(enum.Enum):
    """OpenTelemetry's span kinds (the SDK implementation maps them one to one)."""

    INTERNAL = "internal"
    CLIENT = "client"
    PRODUCER = "producer"
    CONSUMER = "consumer"


class Span(Protocol):
    """What code may do with a span (the SDK's spans have these methods as they are)."""

    def is_recording(self) -> bool: ...

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None: ...

    def add_event(
        self, name: str, attributes: Mapping[str, AttributeValue] | None = None
    ) -> None: ...

    def record_exception(self, exception: BaseException) -> None: ...


class SpanOptions(TypedDict, total=False):
    """A span's options, each optional (`Tracer.span`): `kind` (INTERNAL when left out),
    `attributes`, `parent` (a producer's context), `root` (False), `links` (none), `start_ns`
    (now)."""

    kind: SpanKind
    attributes: Mapping[str, AttributeValue] | None
    parent: RemoteContext | None
    root: bool
    links: Sequence[RemoteContext]
    start_ns: int | None


class Tracer(Protocol):
    """The implementation behind the facade: `NoopTracer`, or the SDK's (`tracing.otel`)."""

    @property
    def enabled(self) -> bool: ...

    def span(self, name: str, **options: Unpack[SpanOptions]) -> AbstractContextManager[Span]:
        """A new span, current inside the block: a child of `parent` (a producer's context),
        else of the current span, else (or with `root=True`) the root of a new trace."""
        ...

    def current(self) -> Span: ...

    def current_context(self) -> RemoteContext | None:
        """The current span's context (None outside any span)."""
        ...

    def registry(self) -> SpanRegistry | None: ...

    def shutdown(self) -> None:
        """Export what is buffered and stop (the CLI calls it on the way out)."""
        ...


class _NoopSpan:
    __slots__ = ()

    def is_recording(self) -> bool:
        return False

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        pass

    def add_event(self, name: str, attributes: Mapping[str, AttributeValue] | None = None) -> None:
        pass

    def record_exception(self, exception: BaseException) -> None:
        pass


_NOOP_SPAN = _NoopSpan()


class _NoopScope(AbstractContextManager[Span]):
    __slots__ = ()

    def __enter__(self) -> Span:
        return _NOOP_SPAN

    def __exit__(self, *exc_info: object) -> None:
        return None


_NOOP_SCOPE = _NoopScope()


class NoopTracer:
    """Tracing off: every span is the same do-nothing object."""

    enabled = False

    def span(
        self,
        name: str,  # noqa: ARG002
        **_options: Unpack[SpanOptions],
    ) -> AbstractContextManager[Span]:
        return _NOOP_SCOPE

    def current(self) -> Span:
        return _NOOP_SPAN

    def current_context(self) -> RemoteContext | None:
        return None

    def registry(self) -> SpanRegistry | None:
        return None

    def shutdown(self) -> None:
        pass


NOOP = NoopTracer()


class SpanRegistry:
    """Which span stands for a key (a contact id -> its request's process span), so that what
    arrives later about the key (a contact event) can link to it. Bounded: past `limit` keys the
    oldest goes. `release(span)` forgets what a span registered when it ends."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._by_key: OrderedDict[str, RemoteContext] = OrderedDict()
        self._by_span: dict[int, list[str]] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def remember(self, key: str, context: RemoteContext) -> None:
        self._by_key[key] = context
        self._by_key.move_to_end(key)
        self._by_span.setdefault(context.span_id, []).append(key)
        while len(self._by_key) > self.limit:
            _, old = self._by_key.popitem(last=False)
            self._by_span.pop(old.span_id, None)

    def recall(self, key: str) -> RemoteContext | None:
        return self._by_key.get(key)

    def release(self, span_id: int) -> None:
        for key in self._by_span.pop(span_id, ()):
            held = self._by_key.get(key)
            if held is not None and held.span_id == span_id:
                del self._by_key[key]


class _Active:
    """The one installed implementation (an attribute, not a `global`, so tests can swap it)."""

    __slots__ = ("tracer",)

    def __init__(self) -> None:
        self.tracer: Tracer = NOOP


_active = _Active()


def tracer() -> Tracer:
    return _active.tracer


def install(implementation: Tracer) -> Tracer:
    """Make `implementation` the one every call goes to; returns the previous one."""
    previous, _active.tracer = _active.tracer, implementation
    return previous


def enabled() -> bool:
    return _active.tracer.enabled


def span(name: str, **options: Unpack[SpanOptions]) -> AbstractContextManager[Span]:
    """A span around the block (see `Tracer.span`); a shared no-op when tracing is off."""
    tracer = _active.tracer
    if not tracer.enabled:
        return _NOOP_SCOPE
    return tracer.span(name, **options)


def current() -> Span:
    return _active.tracer.current()


def add_event(name: str, **attributes: AttributeValue) -> None:
    """An event on the current span (a wait, a retry scheduled)."""
    _active.tracer.current().add_event(name, attributes)


class _Waiting(AbstractContextManager[None]):
    __slots__ = ("_name", "_started")

    def __init__(self, name: str) -> None:
        self._name = name
        self._started = time.monotonic()

    def __exit__(self, *exc_info: object) -> None:
        waited = round(time.monotonic() - self._started, 6)
        _active.tracer.current().add_event(f"{self._name}.waited", {"wait_s": waited})


def waiting(name: str) -> AbstractContextManager[Any]:
    """Around a wait that may last (a rate-budget token, the capacity gate): when it ends, an
    event `<name>.waited` with `wait_s` on the current span. Nothing when not tracing."""
    if not _active.tracer.enabled:
        return _NOOP_SCOPE
    return _Waiting(name)


def trace_id() -> str | None:
    """The current trace's id (32 hex digits), None when not tracing."""
    context = _active.tracer.current_context()
    return None if context is None else context.trace_id_hex


def inject(carrier: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Write the current span's `traceparent` (and `tracestate`) into `carrier`: what a producer
    puts on the message it sends. Nothing when not tracing."""
    context = _active.tracer.current_context()
    if context is not None:
        carrier["traceparent"] = context.traceparent()
        if context.tracestate:
            carrier["tracestate"] = context.tracestate
    return carrier


def remember(key: str) -> None:
    """Let later spans about `key` (a contact id) link to the current span."""
    registry = _active.tracer.registry()
    context = _active.tracer.current_context()
    if registry is not None and context is not None:
        registry.remember(key, context)


def recall(key: str) -> RemoteContext | None:
    registry = _active.tracer.registry()
    return None if registry is None else registry.recall(key)


def release() -> None:
    """Forget every key the current span registered (its work is over)."""
    registry = _active.tracer.registry()
    context = _active.tracer.current_context()
    if registry is not None and context is not None:
        registry.release(context.span_id)


def add_trace_ids(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: `trace_id` and `span_id` on every line written inside a span."""
    context = _active.tracer.current_context()
    if context is not None:
        event_dict.setdefault("trace_id", context.trace_id_hex)
        event_dict.setdefault("span_id", context.span_id_hex)
    return event_dict


def _disabled(environ: Mapping[str, str]) -> bool:
    return environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def from_environment(environ: Mapping[str, str] | None = None) -> Tracer:
    """The implementation the environment asks for: the SDK's when the `otel` extra is
    installed and `OTEL_SDK_DISABLED` is not true, else the no-op (nothing imported)."""
    env = os.environ if environ is None else environ
    if _disabled(env):
        return NOOP
    try:
        from orchestrator.tracing import otel  # noqa: PLC0415 (only with the extra)
    except ImportError:
        return NOOP
    return otel.from_environment(env)


@contextlib.contextmanager
def configured(environ: Mapping[str, str] | None = None) -> Iterator[Tracer]:
    """Install the implementation the environment asks for for the block; on the way out,
    export what is buffered and put the previous one back."""
    implementation = from_environment(environ)
    previous = install(implementation)
    try:
        yield implementation
    finally:
        install(previous)
        implementation.shutdown()
