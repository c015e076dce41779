"""Command-line options of `orchestrator emulator`, and the command itself."""

from __future__ import annotations

import argparse
import asyncio
import sys

from .config import DEFAULT_QUOTAS, SERVICE_ORDERS, EmulatorConfig, parse_quota, parse_range
from .server import serve


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

    res = parser.add_argument_group("instances")
    res.add_argument(
        "--instance-id",
        action="append",
        default=[],
        help="accepted instance id (repeatable; default: accept any)",
    )
    res.add_argument(
        "--contact-flow-id",
        action="append",
        default=[],
        help="accepted contact flow id (repeatable; default: accept any)",
    )
    res.add_argument("--region", default="us-east-1", help="region used in ARNs and events")

    sim = parser.add_argument_group("contact center")
    sim.add_argument(
        "--agent-delay",
        type=parse_range,
        default=(2.0, 10.0),
        metavar="MIN:MAX",
        help="simple model: seconds in queue before an agent connects (default 2:10)",
    )
    sim.add_argument(
        "--abandon-rate",
        type=float,
        default=0.05,
        help="simple model: share of customers who hang up before an agent (default 0.05)",
    )
    sim.add_argument(
        "--talk-time",
        type=parse_range,
        default=(30.0, 120.0),
        metavar="MIN:MAX",
        help="simple model: seconds a connected call lasts (default 30:120)",
    )
    sim.add_argument(
        "--after-contact-work",
        type=parse_range,
        default=(5.0, 30.0),
        metavar="MIN:MAX",
        help="seconds of agent wrap-up between DISCONNECTED and COMPLETED (default 5:30)",
    )
    sim.add_argument(
        "--agents",
        type=int,
        default=None,
        help="contact-center model: a queue served by this many agents",
    )
    sim.add_argument(
        "--service-order",
        choices=SERVICE_ORDERS,
        default="fifo",
        help="contact-center model: a free agent takes the oldest waiting contact (fifo, "
        "default) or a uniformly random one (random, seeded)",
    )
    sim.add_argument(
        "--handle-time",
        type=parse_range,
        default=(60.0, 300.0),
        metavar="MIN:MAX",
        help="contact-center model: seconds an agent is busy per call (default 60:300)",
    )
    sim.add_argument(
        "--patience",
        type=parse_range,
        default=(60.0, 600.0),
        metavar="MIN:MAX",
        help="contact-center model: seconds a customer waits before hanging up (default 60:600)",
    )

    quota = parser.add_argument_group("quotas")
    defaults = ", ".join(f"{op}={q.rate:g}/{q.burst:g}" for op, q in DEFAULT_QUOTAS.items())
    quota.add_argument(
        "--quota",
        type=parse_quota,
        action="append",
        default=[],
        metavar="OPERATION=RATE/BURST",
        help=f"per-account quota of one operation (repeatable; defaults {defaults})",
    )
    quota.add_argument("--no-quotas", action="store_true", help="switch all quotas off")
    quota.add_argument(
        "--max-concurrent-calls",
        type=int,
        default=10,
        help="concurrent active contacts per instance, 0 for unlimited (default 10)",
    )

    faults = parser.add_argument_group("fault injection")
    faults.add_argument("--error-rate", type=float, default=0.0, help="share of 500 answers")
    faults.add_argument(
        "--drop-rate",
        type=float,
        default=0.0,
        help="share of requests whose connection is closed without a response",
    )
    faults.add_argument(
        "--latency",
        type=parse_range,
        default=(0.0, 0.0),
        metavar="MIN:MAX",
        help="added latency per request in milliseconds",
    )
    faults.add_argument(
        "--consistency-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="a new contact answers DescribeContact with 404 for this long",
    )
    faults.add_argument("--seed", type=int, default=None, help="seed for reproducible runs")

    events = parser.add_argument_group(
        "contact events",
        "EventBridge 'Amazon Connect Contact Event' records for every transition (INITIATED, "
        "CONTACT_DATA_UPDATED, QUEUED, CONNECTED_TO_AGENT, DISCONNECTED, COMPLETED), delivered "
        "best effort like EventBridge: the three knobs below change at run time through "
        "POST /_emulator/config (events_drop_rate, events_duplicate_rate, events_delay_s)",
    )
    events.add_argument("--events-queue-url", help="SQS queue to publish contact events to")
    events.add_argument("--events-endpoint-url", help="endpoint of that SQS service")
    events.add_argument("--events-jsonl", help="file to append contact events to")
    events.add_argument(
        "--events-drop-rate",
        type=float,
        default=0.0,
        metavar="RATE",
        help="share of contact events never delivered, 0-1 (default 0; listed in /_emulator/stats)",
    )
    events.add_argument(
        "--events-duplicate-rate",
        type=float,
        default=0.0,
        metavar="RATE",
        help="share of contact events delivered twice with the same id, 0-1 (default 0)",
    )
    events.add_argument(
        "--events-delay",
        type=parse_range,
        default=(0.0, 0.0),
        metavar="MIN:MAX",
        help=(
            "seconds each delivered event waits, drawn per copy, so events arrive out of order "
            "(e.g. 0.05:0.6 or 0.05-0.6; default 0)"
        ),
    )


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    quotas = dict(DEFAULT_QUOTAS)
    quotas.update(dict(args.quota))
    return EmulatorConfig(
        instance_ids=frozenset(args.instance_id),
        contact_flow_ids=frozenset(args.contact_flow_id),
        region=args.region,
        agent_delay_s=args.agent_delay,
        abandon_rate=args.abandon_rate,
        talk_time_s=args.talk_time,
        after_contact_work_s=args.after_contact_work,
        agents=args.agents,
        handle_time_s=args.handle_time,
        patience_s=args.patience,
        service_order=args.service_order,
        quotas=quotas,
        quotas_enabled=not args.no_quotas,
        max_concurrent_calls=args.max_concurrent_calls or None,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        latency_ms=args.latency,
        consistency_delay_s=args.consistency_delay,
        seed=args.seed,
        events_queue_url=args.events_queue_url,
        events_endpoint_url=args.events_endpoint_url,
        events_jsonl_path=args.events_jsonl,
        events_drop_rate=args.events_drop_rate,
        events_duplicate_rate=args.events_duplicate_rate,
        events_delay_s=args.events_delay,
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
