"""Trace context in and out, without the SDK: W3C traceparent, X-Ray's header, the registry."""

from __future__ import annotations

import pytest

from orchestrator import tracing
from orchestrator.tracing import RemoteContext, SpanRegistry, parse_traceparent, parse_xray

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_a_valid_traceparent_is_read_with_its_state_and_flag() -> None:
    context = parse_traceparent(f"00-{TRACE}-{SPAN}-01", "vendor=abc")
    assert context == RemoteContext(int(TRACE, 16), int(SPAN, 16), True, "vendor=abc")
    assert context.traceparent() == f"00-{TRACE}-{SPAN}-01"
    unsampled = parse_traceparent(f"00-{TRACE}-{SPAN}-00")
    assert unsampled is not None and not unsampled.sampled


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE}-{SPAN}-01",  # forbidden version
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has nothing after the flags
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper case is invalid
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(header: str) -> None:
    assert parse_traceparent(header) is None


def test_a_future_version_keeps_its_known_fields() -> None:
    context = parse_traceparent(f"01-{TRACE}-{SPAN}-01-whatever")
    assert context is not None and context.trace_id_hex == TRACE


def test_an_xray_header_becomes_the_same_trace_in_w3c_form() -> None:
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    context = parse_xray(header)
    assert context is not None
    assert context.trace_id_hex == "5759e988bd862e3fe1be46a994272793"
    assert context.span_id_hex == "53995c3f42cd8ad8"
    assert context.sampled
    assert parse_xray(" root=1-5759e988-bd862e3fe1be46a994272793 ; parent=53995c3f42cd8ad8 ")
    not_sampled = parse_xray(header.replace("Sampled=1", "Sampled=0"))
    assert not_sampled is not None and not not_sampled.sampled


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Root=1-5759e988-bd862e3fe1be46a994272793",  # no parent: nothing to continue
        "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
        "Root=1-5759e988-bd86;Parent=53995c3f42cd8ad8",
        "Parent=53995c3f42cd8ad8;Sampled=1",
    ],
)
def test_an_unusable_xray_header_is_ignored(header: str | None) -> None:
    assert parse_xray(header) is None


def test_the_registry_is_bounded_and_forgets_what_a_span_registered() -> None:
    registry = SpanRegistry(limit=3)
    first, second = RemoteContext(1, 10, True), RemoteContext(1, 20, True)
    for key in ("a", "b"):
        registry.remember(key, first)
    registry.remember("c", second)
    registry.remember("d", second)  # past the limit: the oldest ("a") goes
    assert registry.recall("a") is None
    assert registry.recall("b") == first
    registry.release(second.span_id)
    assert (registry.recall("c"), registry.recall("d")) == (None, None)
    assert len(registry) == 1


def test_without_tracing_the_facade_does_nothing() -> None:
    assert not tracing.enabled()
    with tracing.span("anything", attributes={"a": 1}) as span:
        assert not span.is_recording()
        tracing.add_event("nothing")
        tracing.remember("contact")
        assert tracing.trace_id() is None
        assert tracing.inject({}) == {}
        assert tracing.recall("contact") is None
    assert tracing.add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
