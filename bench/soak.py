"""`python -m bench.soak` (`make soak`): the long chaos soak, on demand.

The same harness as the short soak in `make test` (`orchestrator.testing.chaos`), with thousands of
requests, more worker processes and more kills: worker processes on one SQS queue (moto, started
here on loopback), the Connect emulator in its own process with 5xx faults, dropped connections,
latency, quotas low enough to throttle, abandons and a concurrency cap; workers SIGKILLed and
SIGTERMed at seeded random points while the queue drains. Prints the figures and every broken
promise; exits 1 if there was one. Worker and emulator logs go to `--workdir`.
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace
from pathlib import Path

import anyio

from orchestrator.testing.chaos import ChaosPlan, ChaosReport, run_chaos
from orchestrator.testing.emulator.config import parse_quota_value
from orchestrator.testing.processes import sqs_server_process

from .common import isolate_environment

DEFAULT_WORKDIR = Path(__file__).resolve().parent / ".runs" / "soak"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Long chaos soak: worker processes killed while a faulty Connect throttles.",
    )
    p.add_argument("--requests", type=int, default=3000, help="valid requests (default 3000)")
    p.add_argument(
        "--poison-sets", type=int, default=5, help="copies of the 11 poison messages (default 5)"
    )
    p.add_argument("--workers", type=int, default=3, help="workers running at once (default 3)")
    p.add_argument("--kills", type=int, default=12, help="SIGKILLs (default 12)")
    p.add_argument(
        "--graceful-stops", type=int, default=4, help="SIGTERMs, graceful drains (default 4)"
    )
    p.add_argument("--seed", type=int, default=20261121, help="seed of the requests and chaos")
    p.add_argument(
        "--start-quota",
        default="20/10",
        metavar="RATE/BURST",
        help="StartWebRTCContact quota (default 20/10)",
    )
    p.add_argument("--describe-quota", default="60/60", metavar="RATE/BURST")
    p.add_argument("--screen-sharing-quota", default="20/10", metavar="RATE/BURST")
    p.add_argument("--max-concurrent-calls", type=int, default=100)
    p.add_argument("--max-in-flight", type=int, default=100, help="per worker (default 100)")
    p.add_argument(
        "--backlog",
        type=int,
        default=150,
        help="valid requests waiting on the queue at most; more are sent as they finish "
        "(default 150; moto slows down with queue depth)",
    )
    p.add_argument(
        "--deadline", type=float, help="seconds the queue may take to drain (default: scaled)"
    )
    p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="logs of the processes")
    return p


def plan_from(args: argparse.Namespace) -> ChaosPlan:
    quotas = tuple(
        (operation, spec.rate, spec.burst)
        for operation, spec in (
            ("StartWebRTCContact", parse_quota_value(args.start_quota)),
            ("DescribeContact", parse_quota_value(args.describe_quota)),
            ("StartScreenSharing", parse_quota_value(args.screen_sharing_quota)),
        )
    )
    # Room for a slow machine: a 2-core box drains about 6 requests a second here.
    deadline = args.deadline or max(300.0, args.requests / 3 + 120)
    return replace(
        ChaosPlan(),
        requests=args.requests,
        poison_sets=args.poison_sets,
        workers=args.workers,
        kills=args.kills,
        graceful_stops=args.graceful_stops,
        seed=args.seed,
        quotas=quotas,
        max_concurrent_calls=args.max_concurrent_calls,
        max_in_flight=args.max_in_flight,
        backlog=args.backlog,
        deadline_s=deadline,
    )


async def soak(plan: ChaosPlan, workdir: Path) -> ChaosReport:
    async with sqs_server_process(workdir / "sqs-server.log") as sqs:
        return await run_chaos(plan, sqs_url=sqs.url, workdir=workdir)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the emulator and the workers are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    isolate_environment()  # fake credentials only: nothing may reach AWS
    plan = plan_from(args)
    args.workdir.mkdir(parents=True, exist_ok=True)
    for pattern in ("worker-*.log", "emulator.log", "sqs-server.log", "soak.txt"):
        for stale in args.workdir.glob(pattern):  # a previous soak's
            stale.unlink()
    print(
        f"soak: {plan.requests} requests + {plan.poison_sets * 11} poison, {plan.workers} workers, "
        f"{plan.kills} kills, {plan.graceful_stops} graceful stops, seed {plan.seed}; "
        f"logs in {args.workdir}",
        flush=True,
    )
    report = anyio.run(soak, plan, args.workdir)
    text = report.render()
    print(text)
    (args.workdir / "soak.txt").write_text(text + "\n")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
