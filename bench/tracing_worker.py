"""`python -m bench.tracing_worker`: one mode of the tracing scenario, in a process of its own so
that its CPU time (every thread: the SDK's batch exporter included) is its own.

The real `Worker` (`bench.daemon.memory_worker`) runs `contacts` lifecycles fed by a
`MemoryQueue`, with tracing configured as `orchestrator run` configures it (`tracing.configured`,
from the `OTEL_*` environment this mode sets). The CPU time runs from the first message to the
end of the `configured` block, so the exporter's flush is counted. Prints one JSON line.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from aiobotocore.session import AioSession

from orchestrator import tracing
from orchestrator.metrics import Metrics

from .daemon import FinalCounter, memory_settings, memory_worker, run_until, worker_logs
from .harness import child_main, request_body
from .measure import cpu_seconds

#: Each mode's environment (what an operator would set).
MODES: Mapping[str, Mapping[str, str]] = {
    # The default: no OTEL_* configuration reaches the SDK; the no-op facade.
    "off": {"OTEL_SDK_DISABLED": "true"},
    # The SDK installed, nothing sampled (OTEL_TRACES_SAMPLER=always_off).
    "unsampled": {"OTEL_TRACES_SAMPLER": "always_off", "OTEL_TRACES_EXPORTER": "none"},
    # Every span made and ended, none exported: the instrumentation's own cost.
    "recorded": {"OTEL_TRACES_SAMPLER": "always_on", "OTEL_TRACES_EXPORTER": "none"},
    # Every span exported over OTLP/HTTP (protobuf) to a receiver on loopback.
    "otlp": {"OTEL_TRACES_SAMPLER": "always_on", "OTEL_TRACES_EXPORTER": "otlp"},
}


def noop_span_ns(rounds: int = 200_000) -> float:
    """What one span costs through the facade while tracing is off (enter and exit), in ns."""
    began = time.perf_counter_ns()
    for _ in range(rounds):
        with tracing.span("bench", kind=tracing.SpanKind.CLIENT):
            pass
    return (time.perf_counter_ns() - began) / rounds


async def measure(options: Mapping[str, Any]) -> dict[str, Any]:
    mode = options["mode"]
    for key in [k for k in os.environ if k.startswith("OTEL_")]:  # this mode's alone
        del os.environ[key]
    os.environ.update(MODES[mode])
    if mode == "otlp":
        os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = options["receiver_url"]
    metrics = Metrics()
    counter = FinalCounter(expected=options["contacts"])
    settings = memory_settings(
        "tracing",
        options["contacts"],
        options["endpoint_url"],
        options["quotas"],
        watch={"first_delay_s": 1.0, "max_interval_s": 2.0},
    )
    noop_ns = noop_span_ns() if mode == "off" else None
    with tracing.configured() as implementation:
        enabled = implementation.enabled
        async with memory_worker(
            settings, session=AioSession(), metrics=metrics, extra_sinks=[counter], seed=0
        ) as (worker, queue):
            cpu_before = cpu_seconds()
            started = time.monotonic()
            for i in range(options["contacts"]):
                queue.send(request_body("tracing", i))
            completed = await run_until(worker, counter, options["deadline_s"])
            wall = time.monotonic() - started
    cpu = cpu_seconds() - cpu_before  # after the block: the exporter's last flush included
    return {
        "mode": mode,
        "tracing_enabled": enabled,
        "sdk_imported": "opentelemetry.sdk.trace" in sys.modules,
        "contacts": options["contacts"],
        "completed": completed,
        "lifecycles": counter.total,
        "finals": dict(counter.finals),
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_ms_per_lifecycle": cpu * 1000 / max(1, counter.total),
        "noop_span_ns": noop_ns,
        "connect_calls": sum(v for _, v in metrics.samples("orchestrator_connect_calls_total")),
    }


def main(options: Mapping[str, Any]) -> dict[str, Any]:
    with worker_logs(Path(options["log"])):
        return anyio.run(measure, options)


if __name__ == "__main__":
    child_main(main)
