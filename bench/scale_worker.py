"""`python -m bench.scale_worker`: the orchestrator's side of scenario 3, in a process of its own.

The real `Worker` and `LifecycleEngine` (`bench.daemon.memory_worker`: assembled as
`orchestrator.daemon.assembly.open_worker` does) fed by an in-memory `MemoryQueue` instead of
SQS, so that the local SQS server's cost is not measured (the worker still receives 10 messages per
call, holds them in flight, extends their visibility and acknowledges them). Prints its own
accounting as one
JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import anyio
from aiobotocore.session import AioSession

from orchestrator.daemon.settings import Settings
from orchestrator.metrics import Metrics

from .common import REGION, isolate_environment, parse_setting, request_body
from .daemon import FinalCounter, memory_worker, run_until, worker_logs
from .measure import (
    LagMonitor,
    cpu_seconds,
    histogram_summary,
    peak_rss_bytes,
    process_cpu_seconds,
    rss_bytes,
)
from .servers import RESULT_PREFIX


def settings_for(args: argparse.Namespace) -> Settings:
    return Settings(
        aws={"region": REGION},
        queue={
            "url": "http://memory.invalid/scale",  # a MemoryQueue feeds the worker; never called
            "wait_time_s": 1,
            "max_in_flight": max(1000, args.contacts),
        },
        connect={
            "endpoint_url": args.endpoint_url,
            "start_webrtc_contact_rate": args.start_rate,
            "start_webrtc_contact_burst": args.start_rate,
            "describe_contact_rate": args.describe_rate,
            "describe_contact_burst": args.describe_rate,
            "start_screen_sharing_rate": args.start_rate,
            "start_screen_sharing_burst": args.start_rate,
        },
        watch={
            "first_delay_s": args.first_delay,
            "max_interval_s": args.max_interval,
            **dict(args.watch),
        },
        observability={"enabled": False},
    )


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    metrics = Metrics()
    counter = FinalCounter(expected=args.contacts)
    async with memory_worker(
        settings_for(args),
        session=AioSession(),
        metrics=metrics,
        extra_sinks=[counter],
        seed=args.seed,
    ) as (worker, queue):
        notifier = worker.engine.notifier
        monitor = LagMonitor()
        peak_watched = 0

        async def sample_watched() -> None:
            nonlocal peak_watched
            while True:
                peak_watched = max(peak_watched, len(notifier))
                await anyio.sleep(0.1)

        baseline_rss = rss_bytes()
        cpu_before = cpu_seconds()
        emu_before = process_cpu_seconds(args.emulator_pid)
        started = time.monotonic()
        for i in range(args.contacts):
            queue.send(request_body("scale", i))
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor.run)
            tg.start_soon(sample_watched)
            completed = await run_until(worker, counter, args.deadline_s)
            tg.cancel_scope.cancel()
        end = counter.last_final or time.monotonic()
        wall = end - started
        cpu = cpu_seconds() - cpu_before
        emu_cpu = process_cpu_seconds(args.emulator_pid) - emu_before
    return {
        "contacts": args.contacts,
        "completed": completed,
        "finals": dict(counter.finals),
        "wall_s": wall,
        "cpu_s": cpu,
        "baseline_rss_bytes": baseline_rss,
        "peak_rss_bytes": peak_rss_bytes(),
        "loop_lag_ms": monitor.summary_ms(),
        "emulator_cpu_s": emu_cpu,
        "peak_watched": peak_watched,
        # Agent connection to the poll that saw it, as the worker measures it: the rest of the
        # detection delay is the contact.agent_connected event and StartScreenSharing.
        "poll_detection_delay_s": histogram_summary(
            metrics, "orchestrator_agent_detection_delay_seconds"
        ),
        "connect_calls": {
            f"{labels['operation']}:{labels['result']}": value
            for labels, value in metrics.samples("orchestrator_connect_calls_total")
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_worker")
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--emulator-pid", type=int, required=True)
    parser.add_argument("--contacts", type=int, required=True)
    parser.add_argument("--start-rate", type=float, required=True)
    parser.add_argument("--describe-rate", type=float, required=True)
    parser.add_argument("--first-delay", type=float, default=2.0)
    parser.add_argument("--max-interval", type=float, default=10.0)
    parser.add_argument("--deadline-s", type=float, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--watch", type=parse_setting, action="append", default=[])
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv)
    isolate_environment()
    with worker_logs(Path(args.log)):
        result = anyio.run(measure, args)
    print(RESULT_PREFIX + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
