"""Prometheus metrics: one `Metrics` per worker, each on its own registry.

Names, units and labels are documented in docs/operations.md ("Metrics and health"); keep them
stable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_WAIT_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 900, 1800)
_DELAY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120)
_POLL_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144)
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


#: (operation, (tokens, rate per second, waiters)) for each bucket of a rate budget, right now.
BudgetSnapshots = Callable[[], Iterable[tuple[str, tuple[float, float, int]]]]


class _BudgetCollector(Collector):
    def __init__(self, snapshots: BudgetSnapshots) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        tokens = GaugeMetricFamily(
            "orchestrator_rate_budget_tokens",
            "Tokens available in the rate budget of each Connect operation",
            labels=["operation"],
        )
        rate = GaugeMetricFamily(
            "orchestrator_rate_budget_rate_per_second",
            "Current (adaptive) request rate of each Connect operation's budget",
            labels=["operation"],
        )
        waiting = GaugeMetricFamily(
            "orchestrator_rate_budget_waiters",
            "Calls waiting for a token, per Connect operation",
            labels=["operation"],
        )
        for op, (available, current, waiters) in self._snapshots():
            tokens.add_metric([op], available)
            rate.add_metric([op], current)
            waiting.add_metric([op], waiters)
        yield from (tokens, rate, waiting)


class Metrics:
    """Every metric the orchestrator exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages_received = Counter(
            "orchestrator_messages_received", "SQS messages received", registry=r
        )
        self.messages_acknowledged = Counter(
            "orchestrator_messages_acknowledged",
            "SQS messages deleted after their final event",
            registry=r,
        )
        self.messages_handed_back = Counter(
            "orchestrator_messages_handed_back",
            "SQS messages made visible again for redelivery, by reason",
            ["reason"],
            registry=r,
        )
        self.requests = Counter(
            "orchestrator_requests",
            "Requests by final outcome (final event type)",
            ["outcome"],
            registry=r,
        )
        self.cancels = Counter(
            "orchestrator_cancels",
            "Cancel messages by what they achieved, as the worker that received them knows it: "
            "cancelled, too_late (an agent had the contact, or the request was final), unknown "
            "(not held nor recently finished here: its tombstone waits for the request), "
            "malformed",
            ["result"],
            registry=r,
        )
        self.contacts_stopped = Counter(
            "orchestrator_contacts_stopped",
            "Contacts the orchestrator let go of, by why (timed_out, failed, given_up, cancelled) "
            "and what it found and did (stopped, already_ended, agent_connected: not stopped, "
            "error)",
            ["reason", "result"],
            registry=r,
        )
        self.in_flight = Gauge(
            "orchestrator_lifecycles_in_flight", "Contact lifecycles running now", registry=r
        )
        self.connect_calls = Counter(
            "orchestrator_connect_calls",
            "Connect API calls by operation and result (ok, throttled, capacity, error)",
            ["operation", "result"],
            registry=r,
        )
        self.time_to_agent = Histogram(
            "orchestrator_time_to_agent_seconds",
            "Contact initiation to agent connection, from Connect's timestamps",
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.detection_delay = Histogram(
            "orchestrator_agent_detection_delay_seconds",
            "Agent connection (Connect's timestamp) to the orchestrator noticing it, by how it "
            "was noticed (event: a contact event woke the watch; poll: the polling schedule)",
            ["via"],
            buckets=_DELAY_BUCKETS,
            registry=r,
        )
        self.polls_per_contact = Histogram(
            "orchestrator_polls_per_contact",
            "DescribeContact calls per watched contact",
            buckets=_POLL_BUCKETS,
            registry=r,
        )
        self.sink_publishes = Counter(
            "orchestrator_event_publishes", "Events delivered, by sink", ["sink"], registry=r
        )
        self.sink_failures = Counter(
            "orchestrator_event_publish_failures",
            "Failed event deliveries (before retries), by sink",
            ["sink"],
            registry=r,
        )
        self.receive_errors = Counter(
            "orchestrator_receive_errors", "Failed SQS ReceiveMessage calls", registry=r
        )
        self.visibility_extensions = Counter(
            "orchestrator_visibility_extensions",
            "Visibility timeout extensions, by result (ok, error)",
            ["result"],
            registry=r,
        )
        self.loop_lag = Histogram(
            "orchestrator_event_loop_lag_seconds",
            "How late the event loop runs a timer scheduled on time",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.waiting_to_start = Gauge(
            "orchestrator_requests_waiting_to_start",
            "Messages received but whose contact is not started yet (bounded by admission)",
            registry=r,
        )
        self.capacity_blocked = Gauge(
            "orchestrator_capacity_blocked",
            "1 while the instance is at its concurrent-call cap and admission is paused",
            registry=r,
        )
        self.deployment_faults = Counter(
            "orchestrator_deployment_faults",
            "Failures that are the deployment's, not the request's (access denied, not Connect, "
            "unknown default instance or flow, sink down), by reason; the message goes back",
            ["reason"],
            registry=r,
        )
        self.messages_given_up = Counter(
            "orchestrator_messages_given_up",
            "Messages on their last allowed receive that the worker stopped retrying, by reason",
            ["reason"],
            registry=r,
        )
        self.contact_events = Counter(
            "orchestrator_contact_events_received",
            "Connect contact events read from the contact-events queue, by event type",
            ["type"],
            registry=r,
        )
        self.contact_event_outcomes = Counter(
            "orchestrator_contact_events",
            "What became of contact events: matched (woke a watch), early (kept for a watch "
            "about to start), unmatched, duplicate, malformed",
            ["outcome"],
            registry=r,
        )
        self.passed_wakes = Counter(
            "orchestrator_passed_wakes",
            "Watched contacts woken because a younger contact of their queue got an agent, by "
            "what their poll found: served (connected or gone) or waiting",
            ["result"],
            registry=r,
        )
        self.fleet_degraded = Gauge(
            "orchestrator_fleet_degraded",
            "1 while Redis is unreachable and the worker runs on its conservative local share",
            registry=r,
        )
        self.fleet_workers = Gauge(
            "orchestrator_fleet_workers_seen",
            "Live workers seen in the fleet's heartbeats (1 without fleet mode)",
            registry=r,
        )
        self.last_receive = Gauge(
            "orchestrator_last_receive_timestamp_seconds",
            "When the receive loop last completed a ReceiveMessage call (epoch seconds)",
            registry=r,
        )

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
