"""A tiny OTLP/HTTP trace receiver on loopback, for tests and benchmarks of the `otel` extra:
it accepts `POST /v1/traces` (protobuf, as OpenTelemetry's OTLP/HTTP exporter sends), decodes
each request with opentelemetry-proto and keeps the spans.

```python
with OtlpReceiver() as receiver:      # http://127.0.0.1:<port>
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = receiver.traces_url
    ...
    receiver.spans()                  # [ReceivedSpan(name, trace_id, ...)]
```

Needs the `otel` extra (opentelemetry-proto comes with the exporter).
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver decoded it (ids as hex, attributes as plain values)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    service_name: str
    attributes: dict[str, Any] = field(default_factory=dict)
    links: tuple[tuple[str, str], ...] = ()


class OtlpReceiver:
    """Runs in a thread until the block ends; safe under concurrent exports."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        #: Export requests received (each a batch of spans).
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver._keep(request)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def traces_url(self) -> str:
        """What `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set to."""
        return f"{self.url}/v1/traces"

    def _keep(self, request: ExportTraceServiceRequest) -> None:
        received: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            service = str(resource.get("service.name", ""))
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            service_name=service,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            links=tuple((x.trace_id.hex(), x.span_id.hex()) for x in span.links),
                        )
                    )
        with self._lock:
            self.requests += 1
            self._spans.extend(received)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
