"""`python -m bench.soak` (`make soak`): the long chaos soak, on demand.

The same harness as the short soak in `make test` (`orchestrator.testing.chaos`), with thousands of
requests, more worker processes and more kills: worker processes on one SQS queue (moto, started
here on loopback), the Connect emulator in its own process with 5xx faults, dropped connections,
latency, quotas low enough to throttle, abandons and a concurrency cap; workers SIGKILLed and
SIGTERMed at seeded random points while the queue drains. Prints the figures and every broken
promise; exits 1 if there was one. Worker and emulator logs go to `--workdir`.

`--set FIELD=VALUE` changes a field of the plan (`ChaosPlan`, the value read as JSON), e.g.
`--set requests=500 --set kills=4 --set quotas='[["StartWebRTCContact", 20, 10]]'`.
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace
from pathlib import Path

import anyio

from orchestrator.testing.chaos import ChaosPlan, ChaosReport, run_chaos
from orchestrator.testing.processes import sqs_server_process

from .harness import BENCH_DIR, isolate_environment, override, parse_setting

#: The test suite's short run scaled up. moto slows down with queue depth: at most `backlog`
#: valid requests wait on the queue, more are sent as they finish.
SOAK = replace(
    ChaosPlan(),
    requests=3000, poison_sets=5, workers=3, kills=12, graceful_stops=4,
    quotas=(
        ("StartWebRTCContact", 20.0, 10.0), ("DescribeContact", 60.0, 60.0),
        ("StartScreenSharing", 20.0, 10.0),
    ),
    max_concurrent_calls=100, max_in_flight=100, backlog=150,
)  # fmt: skip


def plan_from(settings: list[tuple[str, object]]) -> ChaosPlan:
    plan = SOAK
    for key, value in settings:
        plan = override(plan, key, value)
    if "deadline_s" not in dict(settings):
        # Room for a slow machine: a 2-core box drains about 6 requests a second here.
        plan = replace(plan, deadline_s=max(300.0, plan.requests / 3 + 120))
    return plan


async def soak(plan: ChaosPlan, workdir: Path) -> ChaosReport:
    async with sqs_server_process(workdir / "sqs-server.log") as sqs:
        return await run_chaos(plan, sqs_url=sqs.url, workdir=workdir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--set", action="append", default=[], type=parse_setting, metavar="FIELD=VALUE")
    p.add_argument("--workdir", type=Path, default=BENCH_DIR / ".runs" / "soak")
    args = p.parse_args(argv)
    try:
        plan = plan_from(args.set)
    except ValueError as exc:
        p.error(str(exc))
    # SIGTERM unwinds like Ctrl-C, so the emulator and the workers are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    isolate_environment()  # fake credentials only: nothing may reach AWS
    args.workdir.mkdir(parents=True, exist_ok=True)
    for pattern in ("chaos-w*.log", "emulator.log", "sqs-server.log", "soak.txt"):
        for stale in args.workdir.glob(pattern):  # a previous soak's
            stale.unlink()
    print(
        f"soak: {plan.requests} requests + {plan.poison_sets * 12} poison, {plan.workers} workers, "
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
