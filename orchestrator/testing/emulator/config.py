"""Emulator configuration: the contact-center model, quotas, faults and event publishing.

Everything here is plain data. The command line (`orchestrator emulator`) and the control API
(`POST /_emulator/config`) both build or patch an `EmulatorConfig`; the server reads it on every
request, so a change applies at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.connect.operations import DEFAULT_QUOTAS as CONNECT_DEFAULT_QUOTAS
from orchestrator.connect.operations import Operation, Quota

#: The Connect operations the emulator serves.
OPERATIONS = tuple(op.value for op in Operation)

#: Connect's default quotas, keyed by operation name as the wire and the control API spell them.
DEFAULT_QUOTAS: Mapping[str, Quota] = {op.value: q for op, q in CONNECT_DEFAULT_QUOTAS.items()}


#: Orders in which the contact-center model's agents take waiting contacts.
SERVICE_ORDERS = ("fifo", "random")

#: Settings fixed when the emulator starts (identity, randomness, event publishing).
STARTUP_ONLY = frozenset(
    {
        "region",
        "account_id",
        "seed",
        "events_queue_url",
        "events_endpoint_url",
        "events_jsonl_path",
    }
)


@dataclass
class EmulatorConfig:
    """How the emulated contact center behaves. Durations are seconds unless named `_ms`."""

    # Instances and flows. Empty means "accept any id".
    instance_ids: frozenset[str] = frozenset()
    contact_flow_ids: frozenset[str] = frozenset()
    region: str = "us-east-1"
    account_id: str = "123456789012"

    # Simple queue model: each contact waits uniform(agent_delay_s) after being queued.
    agent_delay_s: tuple[float, float] = (2.0, 10.0)
    abandon_rate: float = 0.05
    talk_time_s: tuple[float, float] = (30.0, 120.0)
    #: Time the contact flow takes to put a new contact in the queue.
    flow_delay_s: float = 0.05
    #: After-contact work of the agent: seconds from DISCONNECTED to COMPLETED (no agent: none).
    after_contact_work_s: tuple[float, float] = (5.0, 30.0)

    # Contact-center model (used when `agents` is set): one queue served by `agents` agents.
    agents: int | None = None
    handle_time_s: tuple[float, float] = (60.0, 300.0)
    patience_s: tuple[float, float] = (60.0, 600.0)
    #: Which waiting contact a free agent takes: "fifo" the oldest, "random" any one, uniformly
    #: (skills-based routing seen from one queue; drawn from the seeded generator).
    service_order: str = "fifo"
    #: Contacts of other applications in the same queue (contact-center model): this many wait
    #: ahead from the start (and after each reset), and more arrive at `background_arrival_rate`
    #: per second. They take agents like ours, never hang up, and count in every position.
    background_contacts: int = 0
    background_arrival_rate: float = 0.0
    #: GetContactMetrics answers AccessDeniedException (a role without the permission).
    metrics_access_denied: bool = False
    #: Contacts started with one of these ClientTokens are held from their start: no agent
    #: and no abandon, until stopped or hung up (a customer no agent will ever answer).
    held_client_tokens: frozenset[str] = frozenset()

    # Quotas per operation per account; `quotas_enabled=False` switches them all off.
    quotas: dict[str, Quota] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))
    quotas_enabled: bool = True
    #: Concurrent active (not yet disconnected) contacts per instance; None is unlimited.
    max_concurrent_calls: int | None = 10

    # Fault injection.
    error_rate: float = 0.0
    drop_rate: float = 0.0
    latency_ms: tuple[float, float] = (0.0, 0.0)
    #: A brand-new contact answers DescribeContact with 404 for this long.
    consistency_delay_s: float = 0.0
    seed: int | None = None

    # Contact events ("Amazon Connect Contact Event" records).
    events_queue_url: str | None = None
    events_endpoint_url: str | None = None
    events_jsonl_path: str | None = None
    #: Best-effort delivery, like EventBridge's: share of events never delivered, share delivered
    #: twice (same `id`), and a random delay per delivered copy (so events arrive out of order).
    events_drop_rate: float = 0.0
    events_duplicate_rate: float = 0.0
    events_delay_s: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("flow_delay_s", "consistency_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in (
            "agent_delay_s",
            "talk_time_s",
            "handle_time_s",
            "patience_s",
            "latency_ms",
            "after_contact_work_s",
            "events_delay_s",
        ):
            low, high = getattr(self, name)
            if low < 0 or high < low:
                raise ValueError(f"{name} must satisfy 0 <= MIN <= MAX, got {low}:{high}")
        for name in (
            "abandon_rate",
            "error_rate",
            "drop_rate",
            "events_drop_rate",
            "events_duplicate_rate",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.service_order not in SERVICE_ORDERS:
            raise ValueError(
                f"service_order must be one of {', '.join(SERVICE_ORDERS)}, "
                f"got {self.service_order!r}"
            )
        if self.background_contacts < 0 or self.background_arrival_rate < 0:
            raise ValueError("background_contacts and background_arrival_rate must be >= 0")
        if self.agents is not None and self.agents < 1:
            raise ValueError(f"agents must be at least 1, got {self.agents}")
        if self.max_concurrent_calls is not None and self.max_concurrent_calls < 1:
            raise ValueError("max_concurrent_calls must be at least 1 (or None for unlimited)")
        unknown = set(self.quotas) - set(OPERATIONS)
        if unknown:
            raise ValueError(f"quota for unknown operation(s): {', '.join(sorted(unknown))}")

    @property
    def contact_center_model(self) -> bool:
        return self.agents is not None

    def patched(self, changes: Mapping[str, Any]) -> EmulatorConfig:
        """A copy with `changes` applied; ranges may be lists, quotas dicts or "RATE/BURST"."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        fixed = set(changes) & STARTUP_ONLY
        if fixed:
            raise ValueError(
                f"cannot change at runtime (restart the emulator): {', '.join(sorted(fixed))}"
            )
        converted: dict[str, Any] = {}
        for key, value in changes.items():
            current = getattr(self, key)
            if isinstance(current, tuple) and isinstance(value, list | tuple):
                converted[key] = (float(value[0]), float(value[1]))
            elif key == "quotas":
                merged = dict(self.quotas)
                for op, spec in dict(value).items():
                    merged[op] = (
                        Quota(**spec) if isinstance(spec, Mapping) else parse_quota_value(spec)
                    )
                converted[key] = merged
            elif isinstance(current, frozenset):
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, str) for v in value
                ):
                    raise ValueError(f"{key} must be a list of strings")
                converted[key] = frozenset(value)
            else:
                converted[key] = value
        return dataclasses.replace(self, **converted)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly view of the settings."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, frozenset):
                value = sorted(value)
            elif f.name == "quotas":
                value = {op: {"rate": q.rate, "burst": q.burst} for op, q in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def parse_range(text: str) -> tuple[float, float]:
    """`"2:10"` (or `"2-10"`) -> (2.0, 10.0); a single number means a fixed value."""
    if ":" not in text and text.count("-") != 1:
        value = float(text)
        return (value, value)
    parts = text.split(":") if ":" in text else text.split("-")
    if len(parts) != 2:
        raise ValueError(f"expected MIN:MAX, got {text!r}")
    low, high = float(parts[0]), float(parts[1])
    if low < 0 or high < low:
        raise ValueError(f"expected 0 <= MIN <= MAX, got {text!r}")
    return (low, high)


def parse_quota_value(text: str) -> Quota:
    """`"10/15"` -> Quota(rate=10, burst=15); `"10"` -> burst equal to the rate (at least 1)."""
    rate_text, _, burst_text = text.partition("/")
    rate = float(rate_text)
    burst = float(burst_text) if burst_text else max(1.0, rate)
    return Quota(rate=rate, burst=burst)


def parse_quota(text: str) -> tuple[str, Quota]:
    """`"DescribeContact=10/15"` -> ("DescribeContact", Quota(10, 15))."""
    operation, sep, spec = text.partition("=")
    if not sep or operation not in OPERATIONS:
        raise ValueError(
            f"expected OPERATION=RATE/BURST with OPERATION in {OPERATIONS}, got {text!r}"
        )
    return operation, parse_quota_value(spec)
