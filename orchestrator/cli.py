"""The `orchestrator` command: parses arguments at the edge and hands typed values down."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from orchestrator.emulator import cli as emulator_cli
from orchestrator.emulator import serve


def _cmd_emulator(args: argparse.Namespace) -> int:
    try:
        config = emulator_cli.config_from_args(args)
    except ValueError as exc:
        print(f"orchestrator emulator: {exc}", file=sys.stderr)
        return 2

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
        return 2
    return 0


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
    result: int = args.handler(args)
    return result
