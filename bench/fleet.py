"""Fleet mode: a queued backlog drained by `orchestrator run` processes scaled 2 -> 6 -> 3 (what
KEDA does) at Connect's real quotas, in three modes with the same schedule:

* static: each worker `quota_share = 0.25` (sized for four replicas, the old ConfigMap);
* independent: each worker `quota_share = 1.0`, slowing down on its own after 429s;
* fleet: every worker spends one shared budget in a real redis-server (no share).

`python -m bench fleet`. The modes (`--only` picks some) run one after the other (`bench.drain`),
so that up to six workers of one mode have the two cores to themselves. The added latency of fleet
mode is measured apart: `acquire()` on the fleet budget against a local Redis vs the local bucket.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from orchestrator.connect.operations import DEFAULT_QUOTAS, Operation, Quota
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.daemon.fleet import FleetBudget, FleetPolicy, redis_client
from orchestrator.daemon.fleet.breaker import Breaker
from orchestrator.metrics import Metrics
from orchestrator.testing.processes import sqs_server_process
from orchestrator.testing.redis import RedisServer
from orchestrator.testing.requests import REGION
from orchestrator.testing.stats import distribution

from . import analysis
from .drain import (
    MAX_RECEIVE_COUNT,
    START,
    Drain,
    Mode,
    drain,
    drained,
    errors_logged,
    figures,
    share,
)
from .harness import Quotas, RunContext, Scenario, Target, figure, say, verdict

MODES = (
    Mode("static", "static share (quota_share 0.25)", {"CONNECT__QUOTA_SHARE": 0.25}),
    Mode("independent", "independent adaptation (quota_share 1.0)", {"CONNECT__QUOTA_SHARE": 1.0}),
    Mode("fleet", "fleet mode (Redis)", {}, redis=True),
)


@dataclass(frozen=True)
class FleetOptions:
    requests: int = 240
    #: (workers, seconds in this phase; None: until drained).
    phases: tuple[tuple[int, float | None], ...] = ((2, 40.0), (6, 40.0), (3, None))
    #: Connect's quotas, in the emulator and in the workers' settings.
    quotas: Quotas = field(
        default_factory=lambda: {str(op): (q.rate, q.burst) for op, q in DEFAULT_QUOTAS.items()}
    )
    agent_delay: str = "1:5"
    #: Long enough that a call outlives its detection (else screen sharing is skipped).
    talk_time: str = "20:40"
    after_contact_work: str = "1:2"
    #: Worker settings beyond the modes' (empty: the defaults, as deployed).
    worker_settings: Mapping[str, Any] = field(default_factory=dict)
    deadline_s: float = 480.0
    sample_every_s: float = 1.0
    #: acquire() calls timed per budget for the added-latency figure.
    latency_calls: int = 3000


QUICK = FleetOptions(
    requests=18, phases=((2, 3.0), (3, 3.0), (2, None)), agent_delay="0.2:0.5", talk_time="3:4",
    # The deadline only guards against a drain that never ends (not a bound on speed).
    after_contact_work="0.1:0.2", deadline_s=300.0, sample_every_s=0.5, latency_calls=200,
    quotas={START: (6.0, 3.0), Operation.DESCRIBE_CONTACT: (100.0, 100.0),
            Operation.START_SCREEN_SHARING: (100.0, 100.0)},
    worker_settings={"QUEUE__WAIT_TIME_S": 1, "SHUTDOWN__GRACE_PERIOD_S": 3,
                     "WATCH__FIRST_DELAY_S": 0.3},
)  # fmt: skip


async def run_mode(
    mode: Mode,
    opts: FleetOptions,
    ctx: RunContext,
    sqs_url: str,
    *,
    meanwhile: Callable[[Drain], Coroutine[Any, Any, None]] | None = None,
) -> Drain:
    """One mode's drain, scaled on schedule; `meanwhile` runs beside the schedule (a Redis
    outage, say)."""

    async def scale_on_schedule(d: Drain) -> None:
        """Scale on schedule until the queue is empty (or the deadline), then to none."""
        at = 0.0
        for count, length in opts.phases:
            if await d.until(at):
                break
            d.marks.append({"at_s": round(d.now(), 1), "workers": count})
            await d.rig.pool.scale_to(count)
            if length is None:
                break
            at += length
        await d.until(opts.deadline_s)
        d.marks.append({"at_s": round(d.now(), 1), "workers": 0})

    async def drive(d: Drain) -> None:
        async with anyio.create_task_group() as tg:
            if meanwhile is not None:
                tg.start_soon(meanwhile, d)
            await scale_on_schedule(d)

    emulator_args = [
        "--abandon-rate", "0", "--max-concurrent-calls", "1000",
        "--agent-delay", opts.agent_delay, "--talk-time", opts.talk_time,
        "--after-contact-work", opts.after_contact_work,
    ]  # fmt: skip
    return await drain(
        mode, ctx=ctx, run=f"fleet-{mode.name}", sqs_url=sqs_url, requests=opts.requests,
        quotas=opts.quotas, emulator_args=emulator_args, settings=opts.worker_settings,
        drive=drive, stop_timeout_s=60.0, sample_every_s=opts.sample_every_s,
    )  # fmt: skip


def mode_figures(d: Drain, opts: FleetOptions) -> dict[str, Any]:
    rate, burst = opts.quotas[START]
    out = figures(d, (rate, burst))
    detection = analysis.detection(d.matched)
    redis = {"FLEET__REDIS_URL": "<local>"} if d.mode.redis else {}
    return {
        **out,
        "settings": {**d.mode.settings, **redis},
        "start_rate_per_s": out["achieved_start_rate"],
        "start_rate_share": out["achieved_start_rate"] / rate,
        "phases": phase_figures(d, d.created, rate),
        "detection_delay_s": detection["detection_delay_s"],
        "undetected": detection["undetected"],
        "errors_logged": errors_logged(d.rig.pool.workers),
        "schedule": d.marks,
    }


def phase_figures(d: Drain, created: Sequence[float], rate: float) -> list[dict[str, Any]]:
    """Starts per phase (2, 6, 3 workers...) as a share of the quota: a phase runs from its
    scaling to the next one; the first from the first start, the last to the last start."""
    if not created:
        return []
    first, last = created[0] - d.started_wall, created[-1] - d.started_wall
    edges = [m["at_s"] for m in d.marks if m["workers"] > 0]
    counts = [m["workers"] for m in d.marks if m["workers"] > 0]
    out = []
    for i, (scaled_at, workers) in enumerate(zip(edges, counts, strict=True)):
        end = edges[i + 1] if i + 1 < len(edges) else last
        begin = max(scaled_at, first) if i == 0 else scaled_at
        closed = i + 1 == len(edges)  # the last phase includes the last start
        starts = sum(
            1 for c in created if begin <= c - d.started_wall < end or (closed and c == created[-1])
        )
        length = end - begin
        per_s = starts / length if length > 0 else math.nan
        out.append({
            "workers": workers, "from_s": round(begin, 1), "to_s": round(end, 1),
            "starts": starts, "start_rate_per_s": per_s, "start_rate_share": per_s / rate,
        })  # fmt: skip
    return out


async def acquire_latency(calls: int, workdir: Path) -> dict[str, Any]:
    """Time `calls` acquire()s on the fleet budget (one Redis script call each, never waiting:
    the quota is far above the call rate) and on the local bucket, in this process."""
    quotas = {START: Quota(1e6, 1e6)}

    async def timed(acquire: Any) -> dict[str, float]:
        for _ in range(min(100, calls)):  # warm up the connection and the script cache
            await acquire()
        took = []
        for _ in range(calls):
            began = time.perf_counter()
            await acquire()
            took.append((time.perf_counter() - began) * 1e6)
        return {k: v for k, v in distribution(took).items() if k in ("count", "p50", "p99", "mean")}

    with RedisServer(workdir / "latency-redis") as server:
        async with redis_client(server.url) as client:
            policy = FleetPolicy()
            breaker = Breaker(policy, metrics=Metrics())
            fleet = FleetBudget(
                client, quotas, prefix=f"bench:{REGION}", policy=policy, breaker=breaker
            )
            shared = await timed(fleet[START].acquire)
    local = await timed(RateBudget(quotas)[START].acquire)
    return {
        "unit": "microseconds per acquire()",
        "fleet_redis": shared,
        "local_bucket": local,
        "added_p50_us": shared["p50"] - local["p50"],
        "added_p99_us": shared["p99"] - local["p99"],
    }


async def measure(opts: FleetOptions, ctx: RunContext) -> dict[str, Any]:
    say(f"fleet: {opts.requests} requests, workers {[n for n, _ in opts.phases]}")
    results: dict[str, dict[str, Any]] = {}
    began = time.monotonic()
    async with sqs_server_process(ctx.log("sqs")) as sqs:
        for mode in MODES:
            if ctx.wants(mode.name):
                results[mode.name] = mode_figures(await run_mode(mode, opts, ctx, sqs.url), opts)
                m = results[mode.name]
                say(
                    f"  {mode.name:<11} {share(m['start_rate_share'])} of the quota, "
                    f"{share(m['start_throttled_share'])} of starts throttled, "
                    f"{m['requests_without_final_event']} without a final event"
                )
    rate, burst = opts.quotas[START]
    return {
        "requests": opts.requests,
        "phases": [{"workers": n, "seconds": s} for n, s in opts.phases],
        "quotas": {str(op): {"rate": r, "burst": b} for op, (r, b) in opts.quotas.items()},
        "run": "modes one after the other, each on a fresh emulator, queues and Redis",
        "emulator": {"agent_delay": opts.agent_delay, "talk_time": opts.talk_time},
        **results,
        "acquire_latency": await acquire_latency(opts.latency_calls, ctx.logs),
        "wall_s": time.monotonic() - began,
        "machine_cpus": os.cpu_count(),
        "quota": {"rate": rate, "burst": burst},
    }


def plot(figures: Mapping[str, Any], path: Path) -> None:
    with figure(path, len(MODES), figsize=(10, 9), sharex=True, sharey=True) as (_, panels):
        rate = figures["quota"]["rate"]
        bin_s = 2.0
        for axes, mode in zip(panels, MODES, strict=True):
            data = figures[mode.name]
            starts = data["timeline"]["starts_s"]
            samples = data["timeline"]["samples"]
            end = max([*starts, *(s[0] for s in samples), 1.0])
            bins = [i * bin_s for i in range(int(end / bin_s) + 2)]
            per_bin = Counter(int(t // bin_s) for t in starts)
            axes.step(
                bins, [per_bin[i] / bin_s for i in range(len(bins))], where="post",
                color="tab:blue", label=f"starts/s ({bin_s:g} s bins)",
            )  # fmt: skip
            t429, r429 = [], []
            for before, after in itertools.pairwise(samples):
                dt = after[0] - before[0]
                if dt > 0:
                    t429.append(after[0])
                    r429.append((after[6] - before[6]) / dt)
            axes.plot(t429, r429, color="tab:red", label="StartWebRTCContact 429s/s")
            axes.axhline(rate, color="grey", linestyle=":", label=f"quota {rate:g}/s")
            twin = axes.twinx()
            twin.step(
                [s[0] for s in samples], [s[1] for s in samples], where="post",
                color="black", alpha=0.35, label="workers",
            )  # fmt: skip
            twin.set_ylim(0, 8)
            twin.set_ylabel("workers")
            rate_share, thr = data["start_rate_share"], data["start_throttled_share"]
            axes.set_title(
                f"{mode.label}: {share(rate_share)} of the quota, {share(thr)} of starts throttled",
                fontsize=10,
            )
            axes.set_ylabel("per second")
            axes.legend(fontsize=8, loc="upper left")
            twin.legend(fontsize=8, loc="upper right")
        panels[-1].set_xlabel("seconds since the first workers started")


def markdown(figures: Mapping[str, Any]) -> str:
    cols = [figures[m.name] for m in MODES]
    quota = figures["quota"]
    lat = figures["acquire_latency"]

    def row(label: str, fmt: Any) -> str:
        return f"| {label} | " + " | ".join(fmt(c) for c in cols) + " |"

    def throttled(c: Mapping[str, Any], what: str) -> str:
        part = share(c[f"{what}_throttled_share"], 1)
        return f"{part} ({c[f'{what}_throttled']}/{c[f'{what}_calls']})"

    def delays(c: Mapping[str, Any]) -> str:
        d = c["detection_delay_s"]
        return f"{d['p50']:.1f} / {d['p95']:.1f} s"

    phase_rows = []
    for i, phase in enumerate(figures["phases"]):

        def per_phase(c: Mapping[str, Any], i: int = i) -> str:
            ph = c["phases"]
            return share(ph[i]["start_rate_share"]) if i < len(ph) else "n/a"

        phase_rows.append(row(f"start rate, {phase['workers']} workers", per_phase))
    t = figures["targets"]
    fleet = figures["fleet"]
    verdicts = (
        f"Targets (fleet mode): >= 90 % of the quota: {verdict(t['start_rate_share'])} "
        f"({share(fleet['start_rate_share'])}); < 1 % 429s: "
        f"{verdict(t['start_throttled_share'])} "
        f"({share(fleet['start_throttled_share'], 1)} of StartWebRTCContact calls)."
    )
    schedule = ", then ".join(
        f"{p['workers']} for {p['seconds']:g} s"
        if p["seconds"]
        else f"{p['workers']} until drained"
        for p in figures["phases"]
    )
    emulator = figures["emulator"]
    header = "| | " + " | ".join(m.label for m in MODES) + " |"
    return f"""## Fleet mode: one shared budget while workers come and go

{figures["requests"]} call requests queued at once, drained by `orchestrator run` processes
scaled as KEDA would: {schedule} (scale-down by SIGTERM to the oldest). Connect's real quotas
in the emulator (StartWebRTCContact {quota["rate"]:g}/s burst {quota["burst"]:g},
DescribeContact 10/s burst 15, StartScreenSharing 2/s burst 5), agents after
{emulator["agent_delay"]} s, calls of {emulator["talk_time"]} s, no cap on concurrent calls,
every other setting at its default (polling, no contact events). Three modes, the same
schedule, run one after the other, each on a fresh emulator, queues (DLQ after
{MAX_RECEIVE_COUNT} receives) and Redis. `python -m bench fleet` (whole run
{figures["wall_s"] / 60:.1f} min).

{header}
|---|---|---|---|
{row("start rate, share of the quota (whole drain)", lambda c: share(c["start_rate_share"]))}
{chr(10).join(phase_rows)}
{row("StartWebRTCContact 429s / calls", lambda c: throttled(c, "start"))}
{row("all Connect calls: 429s / calls", lambda c: throttled(c, "connect"))}
{row("detection delay p50 / p95", delays)}
{row("drain time (queue empty)", lambda c: drained(c["drain_s"]))}
{row("in the DLQ", lambda c: str(c["dead_letters"]))}
{row("requests without a final event", lambda c: str(c["requests_without_final_event"]))}
{row("duplicate contacts", lambda c: str(c["duplicate_contacts"]))}

{verdicts}

Added latency of fleet mode per Connect call: `acquire()` on the fleet budget (one Lua script
call to a local redis-server) p50 {lat["fleet_redis"]["p50"]:.0f} µs, p99
{lat["fleet_redis"]["p99"]:.0f} µs, against the local bucket's p50
{lat["local_bucket"]["p50"]:.1f} µs, p99 {lat["local_bucket"]["p99"]:.1f} µs
({lat["fleet_redis"]["count"]} calls each, quota far above the call rate so nothing waits).
Across a network, add one round trip to Redis.

How measured: start rate = (starts - 1) / (last - first contact's CreatedAt) in the emulator,
over {quota["rate"]:g}/s (the burst lets it pass 100 % slightly); per phase, the starts
between two scalings over the phase's length (the first phase from the first start, the last to
the last start). 429 shares are the emulator's throttled / calls per operation. Detection delay
= ScreenSharingStartedAt - ConnectedToAgentAt. Drain time: from the first workers' launch to
an empty queue (visible + in flight), sampled every second.

![fleet start rate](plots/fleet-start-rate.png)
"""


SCENARIO = Scenario(
    "fleet", "fleet mode: one shared budget while workers come and go", FleetOptions(), QUICK,
    measure, markdown, seed=7, plot=plot, plot_name="fleet-start-rate",
    variants=tuple(m.name for m in MODES),
    targets={"start_rate_share": Target("fleet.start_rate_share", ">=", 0.90),
             "start_throttled_share": Target("fleet.start_throttled_share", "<", 0.01)},
)  # fmt: skip
