"""Scenario 2, detection under a shared budget: how soon an agent connection is noticed.

Every contact is started at once (StartWebRTCContact and StartScreenSharing quotas raised, both
in the emulator and in the client), then all of them wait in the emulator's contact-center model:
one FIFO queue served by `agents` agents, each busy for uniform(`handle_time_s`) per call, with a
patience long enough that nobody hangs up. DescribeContact keeps Connect's default quota (10/s,
burst 15) in the emulator and in the client, so the budget is far too small to poll every waiting
contact often: how it is spent decides how soon connections are noticed.

Three implementations, each against a fresh emulator with the same seed and model, run at the same
time (each at most 10 DescribeContact calls/s; the naive one in its own process):

* ours: the real worker and lifecycle engine (`bench.daemon.memory_worker`), the requests fed
  through an in-memory queue: moto's SQS server hands out 1,000 messages too slowly (about a
  minute) for the contacts to start at once;
* round-robin: `bench.roundrobin`, one loop cycling through the waiting contacts at the budget rate;
* naive: `bench.naive`, a thread per contact polling every 2 s with no budget.

Detection delay = ScreenSharingStartedAt - ConnectedToAgentAt, per contact, from the emulator.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import anyio

from orchestrator.connect.operations import Operation, Quota
from orchestrator.daemon.settings import Settings
from orchestrator.metrics import Metrics
from orchestrator.testing.emulator import EmulatorControl

from . import analysis, naive, servers
from .common import REGION, quota_args, request_body, span
from .context import RunContext, say
from .daemon import FinalCounter, aio_session, memory_worker, run_until, worker_logs
from .measure import ratio
from .roundrobin import run_round_robin

RAISED = 1000.0


@dataclass(frozen=True)
class DetectionOptions:
    contacts: int = 1000
    agents: int = 450
    handle_time_s: tuple[float, float] = (80.0, 120.0)
    patience_s: float = 3600.0
    describe_rate: float = 10.0
    describe_burst: float = 15.0
    naive: bool = True
    #: Implementations to run (ours, round_robin, naive).
    implementations: tuple[str, ...] = field(default=("ours", "round_robin", "naive"))

    def drain_estimate_s(self) -> float:
        """When the last contact gets an agent: the first `agents` at once, then the rest as
        agents free up (mean handle time each), starting after the shortest handle time."""
        waiting = max(0, self.contacts - self.agents)
        if waiting == 0:
            return 0.0
        mean_handle = sum(self.handle_time_s) / 2
        return self.handle_time_s[0] + waiting * mean_handle / self.agents

    def deadline_s(self) -> float:
        return self.drain_estimate_s() + self.handle_time_s[1] + 120.0


def _emulator_args(opts: DetectionOptions, seed: int) -> list[str]:
    return [
        "--seed",
        str(seed),
        "--max-concurrent-calls",
        "0",
        "--agents",
        str(opts.agents),
        "--handle-time",
        span(*opts.handle_time_s),
        "--patience",
        span(opts.patience_s, opts.patience_s),
        *quota_args(
            {
                "StartWebRTCContact": (RAISED, RAISED),
                "DescribeContact": (opts.describe_rate, opts.describe_burst),
                "StartScreenSharing": (RAISED, RAISED),
            }
        ),
    ]


def _client_quotas(opts: DetectionOptions) -> dict[str, Quota]:
    return {
        Operation.START_WEBRTC_CONTACT: Quota(RAISED, RAISED),
        Operation.DESCRIBE_CONTACT: Quota(opts.describe_rate, opts.describe_burst),
        Operation.START_SCREEN_SHARING: Quota(RAISED, RAISED),
    }


async def _ours(opts: DetectionOptions, ctx: RunContext) -> dict[str, Any]:
    n = opts.contacts
    async with servers.emulator(
        _emulator_args(opts, ctx.seed), ctx.log("detection-ours-emulator")
    ) as emulator:
        settings = Settings(
            aws={"region": REGION},
            # A MemoryQueue feeds the worker: the URL (a reserved .invalid name) is never called.
            queue={
                "url": "http://memory.invalid/detection",
                "wait_time_s": 1,
                "max_in_flight": max(1000, n),
            },
            connect={
                "endpoint_url": emulator.url,
                "start_webrtc_contact_rate": RAISED,
                "start_webrtc_contact_burst": RAISED,
                "describe_contact_rate": opts.describe_rate,
                "describe_contact_burst": opts.describe_burst,
                "start_screen_sharing_rate": RAISED,
                "start_screen_sharing_burst": RAISED,
            },
            observability={"enabled": False},
        )
        counter = FinalCounter(expected=n)
        with worker_logs(ctx.log("detection-ours-worker")):
            async with memory_worker(
                settings,
                session=aio_session(),
                metrics=Metrics(),
                extra_sinks=[counter],
                seed=ctx.seed,
            ) as (worker, queue):
                started = time.monotonic()
                for i in range(n):
                    queue.send(request_body("detect", i))
                completed = await run_until(worker, counter, opts.deadline_s())
                wall = (counter.last_final or time.monotonic()) - started
        truth = EmulatorControl(emulator.url, timeout_s=120)
        contacts, stats = await truth.contacts(), await truth.stats()
    return {
        **_common(contacts, stats, opts),
        "completed": completed,
        "wall_s": wall,
        "finals": dict(counter.finals),
    }


async def _round_robin(opts: DetectionOptions, ctx: RunContext) -> dict[str, Any]:
    async with servers.emulator(
        _emulator_args(opts, ctx.seed), ctx.log("detection-rr-emulator")
    ) as emulator:
        poller = await run_round_robin(
            emulator.url, opts.contacts, "detect", _client_quotas(opts), opts.deadline_s()
        )
        truth = EmulatorControl(emulator.url, timeout_s=120)
        contacts, stats = await truth.contacts(), await truth.stats()
    return {**_common(contacts, stats, opts), "poller": poller}


async def _naive(opts: DetectionOptions, ctx: RunContext) -> dict[str, Any]:
    async with servers.emulator(
        _emulator_args(opts, ctx.seed), ctx.log("detection-naive-emulator")
    ) as emulator:
        argv = naive.command(emulator.url, emulator.pid, opts.contacts, opts.deadline_s())
        process = await servers.run_child(
            argv, ctx.log("detection-naive-process"), timeout_s=opts.deadline_s() + 120
        )
        truth = EmulatorControl(emulator.url, timeout_s=120)
        contacts, stats = await truth.contacts(), await truth.stats()
    return {**_common(contacts, stats, opts), "process": process}


def _common(
    contacts: list[dict[str, Any]], stats: dict[str, Any], opts: DetectionOptions
) -> dict[str, Any]:
    ops = analysis.operation_stats(stats)
    return {
        **analysis.detection(contacts, wave_s=opts.handle_time_s[0]),
        "start_window_s": analysis.start_window(contacts)["spread_s"],
        "describe_calls": ops[Operation.DESCRIBE_CONTACT]["calls"],
        "describe_throttled": ops[Operation.DESCRIBE_CONTACT]["throttled"],
        "describe_throttled_fraction": ops[Operation.DESCRIBE_CONTACT]["throttled_fraction"],
        "describe_attempts_per_contact": (
            ops[Operation.DESCRIBE_CONTACT]["calls"] / len(contacts) if contacts else math.nan
        ),
        "operations": ops,
    }


RUNNERS = {"ours": _ours, "round_robin": _round_robin, "naive": _naive}


def comparison(ours: dict[str, Any], other: dict[str, Any]) -> dict[str, float]:
    """ours / other for the detection percentiles (overall and per phase) and the calls per
    contact."""
    a, b = ours["detection_delay_s"], other["detection_delay_s"]
    by_phase = {
        f"{phase.removesuffix('_s')}_{q}": ratio(
            ours["detection_by_phase"][phase][q], other["detection_by_phase"][phase][q]
        )
        for phase in ours["detection_by_phase"]
        for q in ("p50", "p95", "p99")
    }
    return {
        **{f"detection_{q}": ratio(a[q], b[q]) for q in ("mean", "p50", "p95", "p99")},
        **by_phase,
        "describe_calls_per_contact": ratio(
            ours["describe_calls_per_contact"]["mean"], other["describe_calls_per_contact"]["mean"]
        ),
    }


async def run(opts: DetectionOptions, ctx: RunContext) -> dict[str, Any]:
    impls = [i for i in opts.implementations if opts.naive or i != "naive"]
    say(
        f"\n[2/3] detection: {opts.contacts} contacts waiting at once, {opts.agents} agents, "
        f"handle time {span(*opts.handle_time_s)} s, DescribeContact "
        f"{opts.describe_rate:g}/s burst {opts.describe_burst:g}; "
        f"{', '.join(impls)} side by side (about {opts.drain_estimate_s():.0f} s)"
    )
    results: dict[str, Any] = {}

    async def one(name: str) -> None:
        results[name] = await RUNNERS[name](opts, ctx)

    async with anyio.create_task_group() as tg:
        for name in impls:
            tg.start_soon(one, name)
    n = opts.contacts
    theory = n / (2 * opts.describe_rate)
    out: dict[str, Any] = {
        "options": {
            "contacts": n,
            "agents": opts.agents,
            "handle_time_s": list(opts.handle_time_s),
            "patience_s": opts.patience_s,
            "describe_quota": [opts.describe_rate, opts.describe_burst],
            "other_quotas": [RAISED, RAISED],
            "drain_estimate_s": opts.drain_estimate_s(),
        },
        "round_robin_theory_mean_s": theory,
        **{name: results[name] for name in impls},
    }
    if "ours" in results:
        out["ratios"] = {
            other: comparison(results["ours"], results[other]) for other in impls if other != "ours"
        }
    for name in impls:
        d = results[name]["detection_delay_s"]
        say(
            f"      {name:<12} detection p50 {d['p50']:6.1f} s  p95 {d['p95']:6.1f} s  "
            f"p99 {d['p99']:6.1f} s  polls/contact "
            f"{results[name]['describe_calls_per_contact']['mean']:5.1f}  429s "
            f"{results[name]['describe_throttled']}  undetected {results[name]['undetected']}"
        )
    say(f"      round-robin expectation N/(2 x rate) = {theory:.0f} s for the initial N = {n}")
    return out
