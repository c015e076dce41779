"""Trace context as it travels between processes, read and written without OpenTelemetry.

A producer's context reaches the worker in one of two forms: a W3C `traceparent` (with its
`tracestate`) as a message attribute, or SQS's `AWSTraceHeader` system attribute in X-Ray form
(`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`). Both become one
`RemoteContext`; `traceparent` wins when a message has both. These are pure functions: the
tracing facade and its SDK implementation build on them, and the tests check them without the SDK.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: `version-traceid-parentid-flags`, lower-case hex (W3C Trace Context, level 1).
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
#: X-Ray's root: `1-` then the epoch seconds (8 hex) and 24 random hex digits.
_XRAY_ROOT = re.compile(r"^1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})$")
_XRAY_PARENT = re.compile(r"^[0-9a-fA-F]{16}$")
#: What a W3C header may hold at most (tracestate: 32 members of at most 256 characters).
_MAX_TRACESTATE = 512
_SAMPLED = 0x01


@dataclass(frozen=True)
class RemoteContext:
    """A span elsewhere (another process, or an earlier span of this one) to continue or link."""

    trace_id: int
    span_id: int
    sampled: bool
    #: The W3C `tracestate` header as received (vendor data passed on unchanged).
    tracestate: str | None = None

    @property
    def trace_id_hex(self) -> str:
        return f"{self.trace_id:032x}"

    @property
    def span_id_hex(self) -> str:
        return f"{self.span_id:016x}"

    def traceparent(self) -> str:
        """The W3C `traceparent` header of this context."""
        flags = _SAMPLED if self.sampled else 0
        return f"00-{self.trace_id_hex}-{self.span_id_hex}-{flags:02x}"


def parse_traceparent(value: str | None, tracestate: str | None = None) -> RemoteContext | None:
    """A W3C `traceparent` header, or None if it is absent or invalid (then a new trace starts,
    as the specification says)."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    state = tracestate.strip() if tracestate else None
    return RemoteContext(
        trace_id,
        span_id,
        sampled=bool(int(flags_hex, 16) & _SAMPLED),
        tracestate=state if state and len(state) <= _MAX_TRACESTATE else None,
    )


def parse_xray(header: str | None) -> RemoteContext | None:
    """An X-Ray trace header (SQS's `AWSTraceHeader`) as a W3C context: the root's two parts
    are the 128-bit trace id, `Parent` the span id, `Sampled=1` the sampled flag. Without a
    valid `Root` and `Parent` there is nothing to continue: None."""
    if not header:
        return None
    fields: dict[str, str] = {}
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            fields[key.strip().lower()] = value.strip()
    root = _XRAY_ROOT.match(fields.get("root", ""))
    parent = fields.get("parent", "")
    if root is None or not _XRAY_PARENT.match(parent):
        return None
    trace_id, span_id = int(root.group(1) + root.group(2), 16), int(parent, 16)
    if not trace_id or not span_id:
        return None
    return RemoteContext(trace_id, span_id, sampled=fields.get("sampled") == "1")
