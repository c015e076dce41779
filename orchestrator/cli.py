"""The `orchestrator` command: parses arguments at the edge and hands typed values down."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
from aiobotocore.session import get_session

from orchestrator.daemon.assembly import run_daemon
from orchestrator.daemon.logs import configure_logging
from orchestrator.daemon.observability import check_endpoint
from orchestrator.daemon.settings import load_settings, settings_json
from orchestrator.daemon.sqs import sqs_client_config
from orchestrator.errors import ConfigError
from orchestrator.testing.emulator import cli as emulator_cli
from orchestrator.testing.emulator import serve

EXIT_CONFIG = 2


# -- run ---------------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    configure_logging(level=settings.logging.level, json_output=settings.logging.json_output)
    anyio.run(run_daemon, settings)
    return 0


# -- check-config -------------------------------------------------------------------------------


def _cmd_check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    print(settings_json(settings))
    return 0


# -- healthcheck --------------------------------------------------------------------------------


def _cmd_healthcheck(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    problem = check_endpoint(settings.observability, args.path, args.timeout)
    if problem is not None:
        print(f"orchestrator healthcheck: {problem}", file=sys.stderr)
        return 1
    return 0


# -- enqueue ------------------------------------------------------------------------------------


async def enqueue(queue_url: str, endpoint_url: str | None, region: str, lines: list[str]) -> int:
    fifo = queue_url.endswith(".fifo")
    sent = 0
    async with get_session().create_client(
        "sqs", region_name=region, endpoint_url=endpoint_url, config=sqs_client_config()
    ) as sqs:
        for start in range(0, len(lines), 10):
            entries = []
            for i, body in enumerate(lines[start : start + 10]):
                entry = {"Id": str(i), "MessageBody": body}
                if fifo:
                    try:
                        request_id = str(json.loads(body).get("RequestId") or f"line-{start + i}")
                    except (ValueError, AttributeError):
                        request_id = f"line-{start + i}"
                    entry["MessageGroupId"] = request_id
                    entry["MessageDeduplicationId"] = request_id[:128]
                entries.append(entry)
            response = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]
            sent += len(response.get("Successful", []))
            for failure in response.get("Failed", []):
                print(
                    f"failed: line {start + int(failure['Id']) + 1}: {failure.get('Message')}",
                    file=sys.stderr,
                )
    return sent


def _cmd_enqueue(args: argparse.Namespace) -> int:
    source = sys.stdin if args.file in (None, "-") else Path(args.file).open(encoding="utf-8")  # noqa: SIM115
    with source:
        lines = [line.strip() for line in source if line.strip()]
    sent = anyio.run(enqueue, args.queue_url, args.endpoint_url, args.region, lines)
    print(f"sent {sent} of {len(lines)} request(s) to {args.queue_url}")
    return 0 if sent == len(lines) else 1


# -- demo ---------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from orchestrator.testing.demo import run_demo  # noqa: PLC0415 (needs the optional moto dependency)

    if args.requests < 4:
        print("orchestrator demo: --requests must be at least 4", file=sys.stderr)
        return EXIT_CONFIG
    result = anyio.run(lambda: run_demo(args.requests, out=sys.stdout, seed=args.seed))
    return 0 if result.completed else 1


# -- emulator -----------------------------------------------------------------------------------


def _cmd_emulator(args: argparse.Namespace) -> int:
    try:
        config = emulator_cli.config_from_args(args)
    except ValueError as exc:
        print(f"orchestrator emulator: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    def ready(url: str) -> None:
        print(f"Connect emulator listening on {url}", flush=True)

    try:
        asyncio.run(
            serve(
                config, host=args.host, port=args.port, allow_remote=args.allow_remote, ready=ready
            )
        )
    except ValueError as exc:
        print(f"orchestrator emulator: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


# -- parser -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description=(
            "contact-orchestrator: consumes call requests from SQS, starts Amazon Connect WebRTC "
            "contacts, watches them until an agent connects and starts screen sharing, and emits "
            "a lifecycle event at every step."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = (
        "TOML configuration file (default: $ORCHESTRATOR_CONFIG; environment only if unset)"
    )

    run = sub.add_parser(
        "run",
        help="run the worker daemon",
        description=(
            "Run the worker: receive call requests from the SQS queue, drive each contact, emit "
            "lifecycle events, until SIGTERM/SIGINT (graceful: in-flight work gets "
            "[shutdown] grace_period_s, then is handed back to the queue). JSON logs on stdout."
        ),
    )
    run.add_argument("--config", help=config_help)
    run.set_defaults(handler=_cmd_run)

    demo = sub.add_parser(
        "demo",
        help="run the whole job on an embedded Connect emulator and SQS server",
        description=(
            "Start the Connect emulator and an SQS server on loopback, enqueue sample requests, "
            "run the real worker until every request has its final event, and print a summary."
        ),
    )
    demo.add_argument("--requests", type=int, default=20, help="how many requests (default 20)")
    demo.add_argument("--seed", type=int, default=7, help="emulator seed (default 7)")
    demo.set_defaults(handler=_cmd_demo)

    enq = sub.add_parser(
        "enqueue",
        help="send call requests (JSON lines) to a queue",
        description="Send call requests, one JSON object per line, from FILE or stdin to SQS.",
    )
    enq.add_argument("--queue-url", required=True, help="the request queue")
    enq.add_argument("--endpoint-url", help="SQS endpoint (local stacks)")
    enq.add_argument("--region", default="us-east-1", help="AWS region (default us-east-1)")
    enq.add_argument("file", nargs="?", help="JSON lines file, or - for stdin (default)")
    enq.set_defaults(handler=_cmd_enqueue)

    check = sub.add_parser(
        "check-config",
        help="validate the configuration and print the effective settings",
        description=(
            "Load the configuration (file and environment) and print the effective settings as "
            "JSON with secrets masked; on error print what is wrong and exit with status 2."
        ),
    )
    check.add_argument("--config", help=config_help)
    check.set_defaults(handler=_cmd_check_config)

    health = sub.add_parser(
        "healthcheck",
        help="exit 0 when the running worker's /healthz answers 200 (for container healthchecks)",
        description=(
            "Ask the worker running with this configuration for its health on the observability "
            "server ([observability] host and port; a wildcard host is reached on loopback). "
            "Exit 0 on 200, 1 otherwise (the reason on stderr), 2 on a configuration error."
        ),
    )
    health.add_argument("--config", help=config_help)
    health.add_argument(
        "--path",
        default="/healthz",
        choices=["/healthz", "/readyz"],
        help="which endpoint (default /healthz, liveness)",
    )
    health.add_argument(
        "--timeout", type=float, default=4.0, help="seconds to wait for an answer (default 4)"
    )
    health.set_defaults(handler=_cmd_healthcheck)

    emulator = sub.add_parser(
        "emulator",
        help="serve a local, wire-level Amazon Connect emulator",
        description=(
            "Serve a wire-level Amazon Connect emulator (StartWebRTCContact, DescribeContact, "
            "StartScreenSharing) with a simulated contact center, quotas and fault injection, "
            "until SIGTERM or SIGINT. Ground truth and control live under /_emulator/."
        ),
    )
    emulator_cli.add_arguments(emulator)
    emulator.set_defaults(handler=_cmd_emulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except ConfigError as exc:  # a bad file or variable: say what is wrong, no traceback
        print(f"orchestrator: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return result
