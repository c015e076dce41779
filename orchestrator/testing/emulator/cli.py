"""Command-line options of `orchestrator emulator`, and the command itself.

Each option sets one `EmulatorConfig` field, declared once in the table below: its type, metavar
and the default its help shows come from the field, so the dataclass stays the one home of every
default. An option not given is not set, and the dataclass's default applies."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

from .config import DEFAULT_QUOTAS, SERVICE_ORDERS, EmulatorConfig, parse_quota, parse_range
from .server import serve

#: Every field's default, as the command line shows it.
_DEFAULTS: dict[str, Any] = {
    f.name: f.default
    for f in dataclasses.fields(EmulatorConfig)
    if f.default is not dataclasses.MISSING
}


class Option(NamedTuple):
    """`flag` sets `EmulatorConfig.<field>`; `kind` overrides what the field's default implies."""

    flag: str
    field: str
    help: str
    kind: Callable[[str], Any] | None = None
    metavar: str | None = None


#: The options, by argparse group: (title, description, options).
GROUPS: tuple[tuple[str, str | None, tuple[Option, ...]], ...] = (
    (
        "instances",
        None,
        (
            Option(
                "--instance-id",
                "instance_ids",
                "accepted instance id (repeatable; default: accept any)",
            ),
            Option(
                "--contact-flow-id",
                "contact_flow_ids",
                "accepted contact flow id (repeatable; default: accept any)",
            ),
            Option("--region", "region", "region used in ARNs and events"),
        ),
    ),
    (
        "contact center",
        None,
        (
            Option(
                "--agent-delay",
                "agent_delay_s",
                "simple model: seconds in queue before an agent connects",
            ),
            Option(
                "--abandon-rate",
                "abandon_rate",
                "simple model: share of customers who hang up before an agent",
            ),
            Option("--talk-time", "talk_time_s", "simple model: seconds a connected call lasts"),
            Option(
                "--after-contact-work",
                "after_contact_work_s",
                "seconds of agent wrap-up between DISCONNECTED and COMPLETED",
            ),
            Option(
                "--agents",
                "agents",
                "contact-center model: a queue served by this many agents",
                kind=int,
            ),
            Option(
                "--service-order",
                "service_order",
                "contact-center model: a free agent takes the oldest waiting contact (fifo) or a "
                "uniformly random one (random, seeded)",
            ),
            Option(
                "--handle-time",
                "handle_time_s",
                "contact-center model: seconds an agent is busy per call",
            ),
            Option(
                "--patience",
                "patience_s",
                "contact-center model: seconds a customer waits before hanging up",
            ),
            Option(
                "--background-contacts",
                "background_contacts",
                "contact-center model: other applications' contacts waiting ahead at the start "
                "(they take agents and count in GetContactMetrics positions)",
                kind=int,
            ),
            Option(
                "--background-arrival-rate",
                "background_arrival_rate",
                "contact-center model: other applications' contacts arriving per second",
                kind=float,
            ),
        ),
    ),
    (
        "quotas",
        None,
        (
            Option(
                "--max-concurrent-calls",
                "max_concurrent_calls",
                "concurrent active contacts per instance, 0 for unlimited",
            ),
        ),
    ),
    (
        "fault injection",
        None,
        (
            Option("--error-rate", "error_rate", "share of 500 answers"),
            Option(
                "--drop-rate",
                "drop_rate",
                "share of requests whose connection is closed without a response",
            ),
            Option("--latency", "latency_ms", "added latency per request in milliseconds"),
            Option(
                "--consistency-delay",
                "consistency_delay_s",
                "a new contact answers DescribeContact with 404 for this long",
                metavar="SECONDS",
            ),
            Option("--seed", "seed", "seed for reproducible runs", kind=int),
        ),
    ),
    (
        "contact events",
        "EventBridge 'Amazon Connect Contact Event' records for every transition (INITIATED, "
        "CONTACT_DATA_UPDATED, QUEUED, CONNECTED_TO_AGENT, DISCONNECTED, COMPLETED), delivered "
        "best effort like EventBridge: the three knobs below change at run time through "
        "POST /_emulator/config (events_drop_rate, events_duplicate_rate, events_delay_s)",
        (
            Option(
                "--events-queue-url",
                "events_queue_url",
                "SQS queue to publish contact events to",
                kind=str,
            ),
            Option(
                "--events-endpoint-url",
                "events_endpoint_url",
                "endpoint of that SQS service",
                kind=str,
            ),
            Option(
                "--events-jsonl", "events_jsonl_path", "file to append contact events to", kind=str
            ),
            Option(
                "--events-drop-rate",
                "events_drop_rate",
                "share of contact events never delivered, 0-1 (listed in /_emulator/stats)",
                metavar="RATE",
            ),
            Option(
                "--events-duplicate-rate",
                "events_duplicate_rate",
                "share of contact events delivered twice with the same id, 0-1",
                metavar="RATE",
            ),
            Option(
                "--events-delay",
                "events_delay_s",
                "seconds each delivered event waits, drawn per copy, so events arrive out of order "
                "(e.g. 0.05:0.6 or 0.05-0.6)",
            ),
        ),
    ),
)


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ":".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _add(group: Any, option: Option) -> None:
    default = _DEFAULTS[option.field]
    spec: dict[str, Any] = {"dest": option.field, "default": argparse.SUPPRESS}
    if isinstance(default, frozenset):
        spec.update(action="append")
    elif isinstance(default, tuple):
        spec.update(type=parse_range, metavar="MIN:MAX")
    elif option.field == "service_order":
        spec.update(choices=SERVICE_ORDERS)
    else:
        spec.update(type=option.kind or type(default))
    if not isinstance(default, tuple) and option.field != "service_order":
        spec["metavar"] = option.metavar or option.flag.lstrip("-").replace("-", "_").upper()
    shown = (
        "" if default is None or isinstance(default, frozenset) else f" (default {_shown(default)})"
    )
    group.add_argument(option.flag, help=option.help + shown, **spec)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    net.add_argument(
        "--port", type=int, default=8900, help="port to bind, 0 for any (default 8900)"
    )
    net.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow binding a non-loopback address (the emulator has no real authentication)",
    )
    for title, description, options in GROUPS:
        group = parser.add_argument_group(title, description)
        for option in options:
            _add(group, option)
        if title == "quotas":
            defaults = ", ".join(f"{op}={q.rate:g}/{q.burst:g}" for op, q in DEFAULT_QUOTAS.items())
            group.add_argument(
                "--quota",
                type=parse_quota,
                action="append",
                default=[],
                metavar="OPERATION=RATE/BURST",
                help=f"per-account quota of one operation (repeatable; defaults {defaults})",
            )
            group.add_argument("--no-quotas", action="store_true", help="switch all quotas off")


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The options given, over `EmulatorConfig`'s defaults."""
    given = {
        o.field: getattr(args, o.field) for _, _, opts in GROUPS for o in opts if o.field in args
    }
    for name in ("instance_ids", "contact_flow_ids"):
        if name in given:
            given[name] = frozenset(given[name])
    if "max_concurrent_calls" in given:  # 0 is unlimited
        given["max_concurrent_calls"] = given["max_concurrent_calls"] or None
    return EmulatorConfig(
        **given,
        quotas={**DEFAULT_QUOTAS, **dict(args.quota)},
        quotas_enabled=not args.no_quotas,
    )


def run(args: argparse.Namespace) -> int:
    """`orchestrator emulator`: serve until SIGTERM or SIGINT; 2 on an invalid option."""

    def ready(url: str) -> None:
        print(f"Connect emulator listening on {url}", flush=True)

    try:
        config = config_from_args(args)
        asyncio.run(
            serve(
                config, host=args.host, port=args.port, allow_remote=args.allow_remote, ready=ready
            )
        )
    except ValueError as exc:
        print(f"orchestrator emulator: {exc}", file=sys.stderr)
        return 2
    return 0
