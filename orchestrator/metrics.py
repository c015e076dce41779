"""Prometheus metrics: one `Metrics` per worker, each on its own registry.

Names, units and labels are documented in docs/operations.md ("Metrics and health"); keep them
stable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar, overload

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_WAIT_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800)
_DELAY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120)
_POLL_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


#: (operation, (tokens, rate per second, waiters)) for each bucket of a rate budget, right now.
BudgetSnapshots = Callable[[], Iterable[tuple[str, tuple[float, float, int]]]]


#: The rate budget's gauges: (name, help), each fed by one of a snapshot's three numbers.
_BUDGET_GAUGES = (
    ("orchestrator_rate_budget_tokens",
     "Tokens available in the rate budget of each Connect operation"),
    ("orchestrator_rate_budget_rate_per_second",
     "Current (adaptive) request rate of each Connect operation's budget"),
    ("orchestrator_rate_budget_waiters", "Calls waiting for a token, per Connect operation"),
)  # fmt: skip


class _BudgetCollector(Collector):
    def __init__(self, snapshots: BudgetSnapshots) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        families = [GaugeMetricFamily(n, h, labels=["operation"]) for n, h in _BUDGET_GAUGES]
        for op, values in self._snapshots():
            for family, value in zip(families, values, strict=True):
                family.add_metric([op], value)
        yield from families


M = TypeVar("M", Counter, Gauge, Histogram)


class _Declared(Generic[M]):
    """One metric of `Metrics`, declared once on the class: each `Metrics` builds it on its own
    registry, and the built metric (an instance attribute) shadows the declaration."""

    def __init__(
        self, kind: type[M], name: str, documentation: str, labels: Sequence[str], **options: Any
    ) -> None:
        self.kind: type[M] = kind
        self.name, self.documentation = name, documentation
        self.labels, self.options = tuple(labels), options

    def __set_name__(self, owner: type[Any], attr: str) -> None:
        self.attr = attr

    def build(self, registry: CollectorRegistry) -> M:
        built: M = self.kind(
            self.name, self.documentation, self.labels, registry=registry, **self.options
        )
        return built

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> _Declared[M]: ...
    @overload
    def __get__(self, instance: object, owner: type[Any]) -> M: ...
    def __get__(self, instance: object, owner: type[Any]) -> _Declared[M] | M:
        if instance is None:
            return self
        built: M = instance.__dict__[self.attr]
        return built


def _counter(name: str, documentation: str, *labels: str) -> _Declared[Counter]:
    return _Declared(Counter, name, documentation, labels)


def _gauge(name: str, documentation: str, *labels: str) -> _Declared[Gauge]:
    return _Declared(Gauge, name, documentation, labels)


def _histogram(
    name: str, documentation: str, *labels: str, buckets: Sequence[float]
) -> _Declared[Histogram]:
    return _Declared(Histogram, name, documentation, labels, buckets=buckets)


class Metrics:
    """Every metric the orchestrator exports, each declared once below."""

    messages_received = _counter("orchestrator_messages_received", "SQS messages received")
    messages_acknowledged = _counter(
        "orchestrator_messages_acknowledged", "SQS messages deleted after their final event"
    )
    messages_handed_back = _counter(
        "orchestrator_messages_handed_back",
        "SQS messages made visible again for redelivery, by reason",
        "reason",
    )
    requests = _counter(
        "orchestrator_requests", "Requests by final outcome (final event type)", "outcome"
    )
    cancels = _counter(
        "orchestrator_cancels",
        "Cancel messages by what they achieved, as the worker that received them knows it: "
        "cancelled, too_late (an agent had the contact, or the request was final), unknown "
        "(not held nor recently finished here: its tombstone waits for the request), "
        "malformed",
        "result",
    )
    contacts_stopped = _counter(
        "orchestrator_contacts_stopped",
        "Contacts the orchestrator let go of, by why (timed_out, failed, given_up, cancelled) "
        "and what it found and did (stopped, already_ended, agent_connected: not stopped, "
        "error)",
        "reason",
        "result",
    )
    in_flight = _gauge("orchestrator_lifecycles_in_flight", "Contact lifecycles running now")
    connect_calls = _counter(
        "orchestrator_connect_calls",
        "Connect API calls by operation and result (ok, throttled, capacity, error)",
        "operation",
        "result",
    )
    time_to_agent = _histogram(
        "orchestrator_time_to_agent_seconds",
        "Contact initiation to agent connection, from Connect's timestamps",
        buckets=_WAIT_BUCKETS,
    )
    detection_delay = _histogram(
        "orchestrator_agent_detection_delay_seconds",
        "Agent connection (Connect's timestamp) to the orchestrator noticing it, by how it "
        "was noticed (event: a contact event woke the watch; poll: the polling schedule)",
        "via",
        buckets=_DELAY_BUCKETS,
    )
    polls_per_contact = _histogram(
        "orchestrator_polls_per_contact",
        "DescribeContact calls per watched contact",
        buckets=_POLL_BUCKETS,
    )
    sink_publishes = _counter("orchestrator_event_publishes", "Events delivered, by sink", "sink")
    sink_failures = _counter(
        "orchestrator_event_publish_failures",
        "Failed event deliveries (before retries), by sink",
        "sink",
    )
    reply_failures = _counter(
        "orchestrator_reply_failures",
        "Events not delivered to a request's ReplyTo queue (after retries), by reason: "
        "missing_queue, denied, error",
        "reason",
    )
    receive_errors = _counter("orchestrator_receive_errors", "Failed SQS ReceiveMessage calls")
    messages_renewed = _counter(
        "orchestrator_messages_renewed",
        "Requests moved to a fresh message before their last receive (renewal.py)",
    )
    queue_not_found = _counter(
        "orchestrator_queue_not_found",
        "Calls that found no queue at a configured URL, by queue (requests, contact_events)",
        "queue",
    )
    visibility_extensions = _counter(
        "orchestrator_visibility_extensions",
        "Visibility timeout extensions, by result (ok, error)",
        "result",
    )
    loop_lag = _histogram(
        "orchestrator_event_loop_lag_seconds",
        "How late the event loop runs a timer scheduled on time",
        buckets=_LAG_BUCKETS,
    )
    waiting_to_start = _gauge(
        "orchestrator_requests_waiting_to_start",
        "Messages received but whose contact is not started yet (bounded by admission)",
    )
    capacity_blocked = _gauge(
        "orchestrator_capacity_blocked",
        "1 while the instance is at its concurrent-call cap and admission is paused",
    )
    deployment_faults = _counter(
        "orchestrator_deployment_faults",
        "Failures that are the deployment's, not the request's (access denied, not Connect, "
        "unknown default instance or flow, sink down), by reason; the message goes back",
        "reason",
    )
    messages_given_up = _counter(
        "orchestrator_messages_given_up",
        "Messages on their last allowed receive that the worker stopped retrying, by reason",
        "reason",
    )
    contact_events = _counter(
        "orchestrator_contact_events_received",
        "Connect contact events read from the contact-events queue, by event type",
        "type",
    )
    contact_event_outcomes = _counter(
        "orchestrator_contact_events",
        "What became of contact events: matched (woke a watch), early (kept for a watch "
        "about to start), unmatched, duplicate, malformed",
        "outcome",
    )
    passed_wakes = _counter(
        "orchestrator_passed_wakes",
        "Watched contacts woken because a younger contact of their queue got an agent, by "
        "what their poll found: served (connected or gone) or waiting",
        "result",
    )
    fleet_degraded = _gauge(
        "orchestrator_fleet_degraded",
        "1 while Redis is unreachable and the worker runs on its conservative local share",
    )
    fleet_workers = _gauge(
        "orchestrator_fleet_workers_seen",
        "Live workers seen in the fleet's heartbeats (1 without fleet mode)",
    )
    last_receive = _gauge(
        "orchestrator_last_receive_timestamp_seconds",
        "When the receive loop last completed a ReceiveMessage call (epoch seconds)",
    )

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        for declared in vars(Metrics).values():
            if isinstance(declared, _Declared):
                self.__dict__[declared.attr] = declared.build(self.registry)

    def watch_budget(self, snapshots: BudgetSnapshots) -> None:
        """Export a rate budget's tokens, rates and waiters (`RateBudget.snapshots`)."""
        self.registry.register(_BudgetCollector(snapshots))

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample's current value (0 when absent); for summaries and tests."""
        result = self.registry.get_sample_value(name, labels or {})
        return 0.0 if result is None else float(result)

    def samples(self, name: str) -> Iterable[tuple[dict[str, str], float]]:
        for metric in self.registry.collect():
            for sample in metric.samples:
                if sample.name == name:
                    yield dict(sample.labels), float(sample.value)
