"""Scenario 1, quota efficiency: how close the real daemon path gets to StartWebRTCContact's quota.

Connect's default quotas in the emulator (StartWebRTCContact 2/s, burst 5), no concurrent-call
cap, agents that connect at once, so that starting calls is the only bottleneck. The requests go
through SQS (moto, in its own process) and `open_worker(Settings(...))` with the default client
quotas. Figures come from the emulator's ground truth and from the final events.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.settings import Settings
from orchestrator.metrics import Metrics
from orchestrator.testing.emulator import EmulatorControl

from . import analysis, servers
from .common import REGION, quota_args, request_body, request_id, span
from .context import RunContext, say
from .daemon import FinalCounter, aio_session, run_until, sqs_queue_with, worker_logs

START_RATE, START_BURST = 2.0, 5.0

#: Targets of the scenario: (figure, comparison, threshold).
TARGETS = {
    "quota_efficiency": (">=", 0.95),
    "failed_requests": ("==", 0),
    "start_throttled_fraction": ("<", 0.01),
}


@dataclass(frozen=True)
class QuotaOptions:
    requests: int = 300
    talk_time_s: tuple[float, float] = (20.0, 30.0)


def passes(op: str, value: float, threshold: float) -> bool:
    if not math.isfinite(value):
        return False
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    return value == threshold


async def run(opts: QuotaOptions, ctx: RunContext) -> dict[str, Any]:
    n = opts.requests
    say(f"\n[1/3] quota efficiency: {n} requests through SQS and the real worker")
    emulator_args = [
        "--seed",
        str(ctx.seed),
        "--max-concurrent-calls",
        "0",
        "--agent-delay",
        "0:0",
        "--abandon-rate",
        "0",
        "--talk-time",
        span(*opts.talk_time_s),
        *quota_args(
            {
                "StartWebRTCContact": (START_RATE, START_BURST),
                "DescribeContact": (10, 15),
                "StartScreenSharing": (2, 5),
            }
        ),
    ]
    session = aio_session()
    bodies = [request_body("quota", i) for i in range(n)]
    async with (
        servers.sqs_server(ctx.log("quota-sqs")) as sqs,
        servers.emulator(emulator_args, ctx.log("quota-emulator")) as emulator,
    ):
        queue_url = await sqs_queue_with(session, sqs.url, bodies)
        settings = Settings(
            aws={"region": REGION, "endpoint_url": sqs.url},
            # Everything else at its default, the client quotas included. A 1 s long poll only
            # makes the worker notice sooner that the queue is empty.
            queue={"url": queue_url, "wait_time_s": 1, "max_in_flight": max(1000, n)},
            connect={"endpoint_url": emulator.url},
            observability={"enabled": False},
        )
        counter = FinalCounter(expected=n)
        metrics = Metrics()
        with worker_logs(ctx.log("quota-worker")):
            async with open_worker(
                settings, session=session, metrics=metrics, extra_sinks=[counter]
            ) as worker:
                worker.engine.rng = random.Random(ctx.seed)
                started = time.monotonic()
                completed = await run_until(worker, counter, timeout_s=60 + 4 * n / START_RATE)
                wall_s = (counter.last_final or time.monotonic()) - started
        truth = EmulatorControl(emulator.url, timeout_s=120)
        contacts = await truth.contacts()
        stats = await truth.stats()

    matched, strays = analysis.match_requests(contacts, [request_id("quota", i) for i in range(n)])
    window = analysis.start_window(matched.values())
    starts = len(matched)
    efficiency = analysis.quota_efficiency(starts, window["spread_s"], START_RATE, START_BURST)
    ops = analysis.operation_stats(stats)
    failed = counter.finals.get("request.failed", 0)
    no_final = n - counter.total
    figures: dict[str, Any] = {
        "requests": n,
        "completed": completed,
        "starts": starts,
        "unmatched_contacts": strays,
        "start_window_s": window["spread_s"],
        "quota_rate": START_RATE,
        "quota_burst": START_BURST,
        "quota_efficiency": efficiency,
        "achieved_start_rate": (
            (starts - 1) / window["spread_s"] if window["spread_s"] > 0 else math.nan
        ),
        "start_throttled": ops["StartWebRTCContact"]["throttled"],
        "start_calls": ops["StartWebRTCContact"]["calls"],
        "start_throttled_fraction": ops["StartWebRTCContact"]["throttled_fraction"],
        "failed_requests": failed + no_final,
        "request_failed_events": failed,
        "requests_without_final_event": no_final,
        "finals": dict(counter.finals),
        "wall_s": wall_s,
        "wall_requests_per_s": n / wall_s if wall_s > 0 else math.nan,
        "operations": ops,
    }
    figures["targets"] = {
        name: {
            "op": op,
            "threshold": threshold,
            "value": figures[name],
            "pass": passes(op, float(figures[name]), threshold),
        }
        for name, (op, threshold) in TARGETS.items()
    }
    say(
        f"      {starts} starts in {window['spread_s']:.1f} s: {efficiency:.1%} of the quota, "
        f"{figures['start_throttled']} throttled, {figures['failed_requests']} failed"
    )
    return figures
