"""`python -m bench.scale_worker`: the orchestrator's side of scenario 3, in a process of its own.

The real `Worker` and `LifecycleEngine` (`bench.daemon.memory_worker`: assembled as
`orchestrator.daemon.assembly.open_worker` does) fed by an in-memory `MemoryQueue` instead of
SQS, so that the local SQS server's cost is not measured (the worker still receives 10 messages per
call, holds them in flight, extends their visibility and acknowledges them). Its options come as
JSON in argv[1]; it prints its own accounting as one JSON line.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from aiobotocore.session import AioSession

from orchestrator.metrics import Metrics

from .daemon import FinalCounter, memory_settings, memory_worker, run_until, worker_logs
from .harness import child_main, request_body
from .measure import (
    LagMonitor,
    cpu_seconds,
    histogram_summary,
    peak_rss_bytes,
    process_cpu_seconds,
    rss_bytes,
)


async def measure(options: Mapping[str, Any]) -> dict[str, Any]:
    metrics = Metrics()
    counter = FinalCounter(expected=options["contacts"])
    async with memory_worker(
        memory_settings(
            "scale",
            options["contacts"],
            options["endpoint_url"],
            options["quotas"],
            watch={"first_delay_s": 2.0, "max_interval_s": 10.0},
        ),
        session=AioSession(),
        metrics=metrics,
        extra_sinks=[counter],
        seed=options["seed"],
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
        emu_before = process_cpu_seconds(options["emulator_pid"])
        started = time.monotonic()
        for i in range(options["contacts"]):
            queue.send(request_body("scale", i))
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor.run)
            tg.start_soon(sample_watched)
            completed = await run_until(worker, counter, options["deadline_s"])
            tg.cancel_scope.cancel()
        end = counter.last_final or time.monotonic()
        wall = end - started
        cpu = cpu_seconds() - cpu_before
        emu_cpu = process_cpu_seconds(options["emulator_pid"]) - emu_before
    return {
        "contacts": options["contacts"],
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


def main(options: Mapping[str, Any]) -> dict[str, Any]:
    with worker_logs(Path(options["log"])):
        return anyio.run(measure, options)


if __name__ == "__main__":
    child_main(main)
