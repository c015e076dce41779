"""Fleet mode: a queued backlog drained by `orchestrator run` processes scaled 2 -> 6 -> 3 (what
KEDA does) at Connect's real quotas, in three modes with the same schedule:

* static share: each worker `quota_share = 0.25` (sized for four replicas, the old ConfigMap);
* independent adaptation: each worker `quota_share = 1.0`, slowing down on its own after 429s;
* fleet mode: every worker spends one shared budget in a real redis-server (no share).

```
python -m bench.fleet            # 240 requests, 2 -> 6 -> 3 workers, records bench/results.json
python -m bench.fleet --quick    # a small run, under bench/.runs/fleet-quick*, no record
```

The modes run one after the other, each on a fresh emulator (its own account quotas) and fresh
queues on one SQS server, so that up to six workers of one mode have the two cores to
themselves. Figures come from the emulator's ground truth (contacts' CreatedAt,
ScreenSharingStartedAt, per-operation calls and 429s, sampled every second for the timeline),
the events queue (final events) and the dead-letter queue. The added latency of fleet mode is
measured apart: `acquire()` on the fleet budget against a local Redis vs the local bucket.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from aiobotocore.session import AioSession

from orchestrator.connect.operations import DEFAULT_QUOTAS, Operation, Quota
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.daemon.fleet import FleetBudget, redis_client
from orchestrator.daemon.fleet.breaker import Breaker
from orchestrator.testing.emulator import EmulatorControl
from orchestrator.testing.processes import LoggedChild
from orchestrator.testing.queues import (
    EventFollower,
    create_queue,
    create_queue_with_dlq,
    queue_counts,
    send_all,
)
from orchestrator.testing.redis import RedisServer
from orchestrator.testing.stats import distribution

from . import analysis, servers
from .common import REGION, isolate_environment, quota_args, request_body, request_id
from .context import RunContext, say
from .record import BENCH_DIR, plot_path, record

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

NAME = "fleet"
START = Operation.START_WEBRTC_CONTACT
MAX_RECEIVE_COUNT = 5
TARGETS = {"start_rate_share": (">=", 0.90), "start_throttled_share": ("<", 0.01)}


@dataclass(frozen=True)
class Mode:
    name: str
    label: str
    #: ORCHESTRATOR_* settings on top of the common ones.
    settings: Mapping[str, Any]
    redis: bool = False


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
    quotas: Mapping[Operation, Quota] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))
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
    requests=18,
    phases=((2, 3.0), (3, 3.0), (2, None)),
    quotas={
        START: Quota(6.0, 3.0),
        Operation.DESCRIBE_CONTACT: Quota(100.0, 100.0),
        Operation.START_SCREEN_SHARING: Quota(100.0, 100.0),
    },
    agent_delay="0.2:0.5",
    talk_time="3:4",
    after_contact_work="0.1:0.2",
    worker_settings={
        "QUEUE__WAIT_TIME_S": 1,
        "SHUTDOWN__GRACE_PERIOD_S": 3,
        "WATCH__FIRST_DELAY_S": 0.3,
    },
    deadline_s=20.0,
    sample_every_s=0.5,
    latency_calls=200,
)


# -- one mode's run --------------------------------------------------------------------------------


@dataclass
class ModeRun:
    """One mode's run in progress: its queues, workers, samples and events."""

    mode: Mode
    opts: FleetOptions
    sqs: SQSClient
    sqs_url: str
    control: EmulatorControl
    connect_url: str
    logs: Path
    redis_url: str | None = None
    queue: str = ""
    dlq: str = ""
    events: str = ""
    follower: EventFollower = field(default_factory=EventFollower)
    workers: list[LoggedChild] = field(default_factory=list)
    alive: list[LoggedChild] = field(default_factory=list)
    started_at: float = 0.0
    started_wall: float = 0.0
    #: (seconds since start, workers running from then on)
    scaled: list[tuple[float, int]] = field(default_factory=list)
    #: (seconds, workers, visible, in flight, dead-lettered, {op: (calls, throttled)})
    samples: list[tuple[float, int, int, int, int, dict[str, tuple[int, int]]]] = field(
        default_factory=list
    )
    drained_s: float | None = None

    def env(self) -> dict[str, str]:
        settings: dict[str, Any] = {
            "AWS__REGION": REGION,
            "AWS__ENDPOINT_URL": self.sqs_url,
            "QUEUE__URL": self.queue,
            "CONNECT__ENDPOINT_URL": self.connect_url,
            "EVENTS__SQS_QUEUE_URL": self.events,
            "OBSERVABILITY__ENABLED": "false",
            "LOGGING__LEVEL": "INFO",
            **{
                f"CONNECT__{Operation(op).name}_{kind}": value
                for op, q in self.opts.quotas.items()
                for kind, value in (("RATE", q.rate), ("BURST", q.burst))
            },
            **self.opts.worker_settings,
            **self.mode.settings,
        }
        if self.mode.redis:
            assert self.redis_url is not None
            settings["FLEET__REDIS_URL"] = self.redis_url
        env = servers.child_env()
        env.update({f"ORCHESTRATOR_{k}": str(v) for k, v in settings.items()})
        return env

    def now(self) -> float:
        return time.monotonic() - self.started_at

    async def set_up(self) -> list[str]:
        self.queue, self.dlq = await create_queue_with_dlq(
            self.sqs, max_receive_count=MAX_RECEIVE_COUNT, prefix=f"fleet-{self.mode.name}"
        )
        self.events = await create_queue(self.sqs, f"fleet-{self.mode.name}-ev")
        run = f"fleet-{self.mode.name}"
        ids = [request_id(run, i) for i in range(self.opts.requests)]
        await send_all(self.sqs, self.queue, [request_body(run, i) for i in range(len(ids))])
        return ids

    async def scale_to(self, count: int, stops: Any) -> None:
        """Start workers up to `count`, or SIGTERM the oldest beyond it (a scale-down)."""
        self.scaled.append((self.now(), count))
        while len(self.alive) < count:
            name = f"{self.mode.name}-w{len(self.workers)}"
            argv = [sys.executable, "-m", "orchestrator", "run"]
            child = await LoggedChild.start(name, argv, self.env(), self.logs / f"{name}.log")
            self.workers.append(child)
            self.alive.append(child)
        while len(self.alive) > count:
            victim = self.alive.pop(0)
            victim.signal(signal.SIGTERM)
            stops.start_soon(_exit_within, victim, 60.0)

    async def sample(self, done: anyio.Event) -> None:
        empty_twice = 0
        while not done.is_set():
            t = self.now()
            visible, hidden = await queue_counts(self.sqs, self.queue)
            dead = sum(await queue_counts(self.sqs, self.dlq))
            stats = await self.control.stats()
            ops = {
                op: (int(s["calls"]), int(s["throttled"]))
                for op, s in analysis.operation_stats(stats).items()
            }
            self.samples.append((t, len(self.alive), visible, hidden, dead, ops))
            empty_twice = empty_twice + 1 if (visible, hidden) == (0, 0) else 0
            if empty_twice >= 2 and self.drained_s is None:
                self.drained_s = self.samples[-2][0]
            elif empty_twice == 0:
                self.drained_s = None
            with anyio.move_on_after(self.opts.sample_every_s):
                await done.wait()

    async def drive(self, stops: Any) -> None:
        """Scale on schedule until the queue is empty (or the deadline), then SIGTERM the rest."""
        self.started_at, self.started_wall = time.monotonic(), time.time()
        at = 0.0
        for count, length in self.opts.phases:
            while self.drained_s is None and self.now() < at:
                await self.follower.next_arrival(within_s=min(0.5, max(0.01, at - self.now())))
            if self.drained_s is not None:
                break
            await self.scale_to(count, stops)
            if length is None:
                break
            at += length
        while self.drained_s is None and self.now() < self.opts.deadline_s:
            await self.follower.next_arrival(within_s=0.5)
        await self.scale_to(0, stops)


async def _exit_within(child: LoggedChild, timeout_s: float) -> None:
    try:
        await child.wait(timeout_s)
    except TimeoutError:
        await child.close()


# -- figures ---------------------------------------------------------------------------------------


def _share(part: float, whole: float) -> float:
    return part / whole if whole else math.nan


def phase_figures(run: ModeRun, created: Sequence[float], rate: float) -> list[dict[str, Any]]:
    """Starts per phase (2, 6, 3 workers...) as a share of the quota: a phase runs from its
    scaling to the next one; the first from the first start, the last to the last start."""
    if not created:
        return []
    first, last = created[0] - run.started_wall, created[-1] - run.started_wall
    edges = [t for t, n in run.scaled if n > 0]
    counts = [n for _, n in run.scaled if n > 0]
    out = []
    for i, (scaled_at, workers) in enumerate(zip(edges, counts, strict=True)):
        end = edges[i + 1] if i + 1 < len(edges) else last
        begin = max(scaled_at, first) if i == 0 else scaled_at
        closed = i + 1 == len(edges)  # the last phase includes the last start
        starts = sum(
            1
            for c in created
            if begin <= c - run.started_wall < end or (closed and c == created[-1])
        )
        length = end - begin
        per_s = starts / length if length > 0 else math.nan
        out.append({
            "workers": workers, "from_s": round(begin, 1), "to_s": round(end, 1),
            "starts": starts, "start_rate_per_s": per_s, "start_rate_share": per_s / rate,
        })  # fmt: skip
    return out


def mode_figures(
    run: ModeRun, ids: list[str], contacts: list[dict[str, Any]], stats: Mapping[str, Any],
    dead: int,
) -> dict[str, Any]:  # fmt: skip
    quota = run.opts.quotas[START]
    matched, strays = analysis.match_requests(contacts, ids)
    created = sorted(float(c["CreatedAt"]) for c in matched.values())
    spread = created[-1] - created[0] if len(created) > 1 else math.nan
    per_s = (len(created) - 1) / spread if len(created) > 1 and spread > 0 else math.nan
    ops = analysis.operation_stats(stats)
    calls = sum(s["calls"] for s in ops.values())
    throttled = sum(s["throttled"] for s in ops.values())
    per_token = Counter(c.get("ClientToken") for c in contacts)
    detection = analysis.detection(list(matched.values()))
    finals = run.follower.finals
    return {
        "label": run.mode.label,
        "settings": dict(run.mode.settings)
        | ({"FLEET__REDIS_URL": "<local>"} if run.mode.redis else {}),
        "requests": len(ids),
        "requests_with_a_contact": len(matched),
        "duplicate_contacts": sum(n - 1 for n in per_token.values()) + strays,
        "start_rate_per_s": per_s,
        "start_rate_share": per_s / quota.rate,
        "quota_efficiency": analysis.quota_efficiency(
            len(created), spread, quota.rate, quota.burst
        ),
        "start_window_s": spread,
        "phases": phase_figures(run, created, quota.rate),
        "start_calls": ops[START]["calls"],
        "start_throttled": ops[START]["throttled"],
        "start_throttled_share": ops[START]["throttled_fraction"],
        "connect_calls": calls,
        "connect_throttled": throttled,
        "connect_throttled_share": _share(throttled, calls),
        "operations": ops,
        "detection_delay_s": detection["detection_delay_s"],
        "undetected": detection["undetected"],
        "drain_s": run.drained_s,
        "dead_letters": dead,
        "requests_without_final_event": sum(1 for r in ids if r not in finals),
        "finals": dict(Counter(t for types in finals.values() for t in types)),
        "errors_logged": _errors_logged(run.workers),
        "schedule": [{"at_s": round(t, 1), "workers": n} for t, n in run.scaled],
        "timeline": {
            "samples": [
                [round(t, 2), n, v, h, d, *ops_[START], *_totals(ops_)]
                for t, n, v, h, d, ops_ in run.samples
            ],
            "starts_s": [round(c - run.started_wall, 2) for c in created],
        },
    }


def _totals(ops: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    return sum(c for c, _ in ops.values()), sum(t for _, t in ops.values())


def _errors_logged(workers: Sequence[LoggedChild]) -> int:
    errors = 0
    for child in workers:
        for line in child.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{") and ('"level": "error"' in line or '"level":"error"' in line):
                errors += 1
    return errors


# -- the runs --------------------------------------------------------------------------------------


async def run_mode(
    mode: Mode, opts: FleetOptions, ctx: RunContext, session: AioSession, sqs_url: str
) -> dict[str, Any]:
    emulator_args = [
        "--seed", str(ctx.seed), "--abandon-rate", "0", "--max-concurrent-calls", "1000",
        "--agent-delay", opts.agent_delay, "--talk-time", opts.talk_time,
        "--after-contact-work", opts.after_contact_work,
        *quota_args({str(op): (q.rate, q.burst) for op, q in opts.quotas.items()}),
    ]  # fmt: skip
    redis = RedisServer(ctx.logs / f"{mode.name}-redis") if mode.redis else None
    try:
        if redis is not None:
            redis.__enter__()
        async with (
            session.create_client("sqs", region_name=REGION, endpoint_url=sqs_url) as sqs,
            servers.emulator(emulator_args, ctx.log(f"{mode.name}-emulator")) as emulator,
        ):
            control = EmulatorControl(emulator.url, timeout_s=120)
            run = ModeRun(mode, opts, sqs, sqs_url, control, emulator.url, ctx.logs)
            run.redis_url = redis.url if redis is not None else None
            ids = await run.set_up()
            done = anyio.Event()
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(run.follower.follow, sqs, run.events)
                    tg.start_soon(run.sample, done)
                    async with anyio.create_task_group() as stops:
                        await run.drive(stops)
                    done.set()
                    tg.cancel_scope.cancel()
            finally:
                for child in run.workers:
                    await child.close()
            await run.follower.sweep(sqs, run.events)
            contacts = await control.contacts()
            stats = await control.stats()
            dead = sum(await queue_counts(sqs, run.dlq))
    finally:
        if redis is not None:
            redis.__exit__()
    return mode_figures(run, ids, contacts, stats, dead)


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
            fleet = FleetBudget(client, quotas, prefix=f"bench:{REGION}", breaker=Breaker())
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
    session = AioSession()
    results: dict[str, dict[str, Any]] = {}
    began = time.monotonic()
    async with servers.sqs_server(ctx.log("sqs")) as sqs:
        for mode in MODES:
            say(f"fleet: mode {mode.name}")
            results[mode.name] = await run_mode(mode, opts, ctx, session, sqs.url)
            say(f"fleet: mode {mode.name} done: {json.dumps(summary_of(results[mode.name]))}")
    latency = await acquire_latency(opts.latency_calls, ctx.logs)
    quota = opts.quotas[START]
    figures: dict[str, Any] = {
        "requests": opts.requests,
        "phases": [{"workers": n, "seconds": s} for n, s in opts.phases],
        "quotas": {str(op): {"rate": q.rate, "burst": q.burst} for op, q in opts.quotas.items()},
        "run": "modes one after the other, each on a fresh emulator, queues and Redis",
        "emulator": {"agent_delay": opts.agent_delay, "talk_time": opts.talk_time},
        **{mode.name: results[mode.name] for mode in MODES},
        "acquire_latency": latency,
        "wall_s": time.monotonic() - began,
        "machine_cpus": os.cpu_count(),
    }
    ours = results["fleet"]
    figures["targets"] = {
        name: {"op": op, "threshold": threshold, "value": ours[name],
               "pass": _passes(op, float(ours[name]), threshold)}
        for name, (op, threshold) in TARGETS.items()
    }  # fmt: skip
    figures["quota"] = {"rate": quota.rate, "burst": quota.burst}
    return figures


def _passes(op: str, value: float, threshold: float) -> bool:
    if not math.isfinite(value):
        return False
    return value >= threshold if op == ">=" else value < threshold


# -- the plot and the section ----------------------------------------------------------------------


def plot(figures: Mapping[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, panels = plt.subplots(len(MODES), 1, figsize=(10, 9), sharex=True, sharey=True)
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
        share, thr = data["start_rate_share"], data["start_throttled_share"]
        axes.set_title(
            f"{mode.label}: {_pct(share)} of the quota, {_pct(thr)} of starts throttled",
            fontsize=10,
        )
        axes.set_ylabel("per second")
        axes.legend(fontsize=8, loc="upper left")
        twin.legend(fontsize=8, loc="upper right")
    panels[-1].set_xlabel("seconds since the first workers started")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pct(value: Any, digits: int = 0) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}%}"


def markdown(figures: Mapping[str, Any]) -> str:
    cols = [figures[m.name] for m in MODES]
    quota = figures["quota"]
    lat = figures["acquire_latency"]

    def row(label: str, fmt: Any) -> str:
        return f"| {label} | " + " | ".join(fmt(c) for c in cols) + " |"

    def secs(value: Any) -> str:
        return "did not drain" if value is None else f"{value:.0f} s"

    def throttled(c: Mapping[str, Any], what: str) -> str:
        share = _pct(c[f"{what}_throttled_share"], 1)
        return f"{share} ({c[f'{what}_throttled']}/{c[f'{what}_calls']})"

    def delays(c: Mapping[str, Any]) -> str:
        d = c["detection_delay_s"]
        return f"{d['p50']:.1f} / {d['p95']:.1f} s"

    phase_rows = []
    for i, phase in enumerate(figures["phases"]):

        def per_phase(c: Mapping[str, Any], i: int = i) -> str:
            ph = c["phases"]
            return _pct(ph[i]["start_rate_share"]) if i < len(ph) else "n/a"

        phase_rows.append(row(f"start rate, {phase['workers']} workers", per_phase))
    t = figures["targets"]
    fleet = figures["fleet"]
    verdict = (
        f"Targets (fleet mode): >= 90 % of the quota: "
        f"**{'met' if t['start_rate_share']['pass'] else 'missed'}** "
        f"({_pct(fleet['start_rate_share'])}); < 1 % 429s: "
        f"**{'met' if t['start_throttled_share']['pass'] else 'missed'}** "
        f"({_pct(fleet['start_throttled_share'], 1)} of StartWebRTCContact calls)."
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
{MAX_RECEIVE_COUNT} receives) and Redis. `python -m bench.fleet` (whole run
{figures["wall_s"] / 60:.1f} min).

{header}
|---|---|---|---|
{row("start rate, share of the quota (whole drain)", lambda c: _pct(c["start_rate_share"]))}
{chr(10).join(phase_rows)}
{row("StartWebRTCContact 429s / calls", lambda c: throttled(c, "start"))}
{row("all Connect calls: 429s / calls", lambda c: throttled(c, "connect"))}
{row("detection delay p50 / p95", delays)}
{row("drain time (queue empty)", lambda c: secs(c["drain_s"]))}
{row("in the DLQ", lambda c: str(c["dead_letters"]))}
{row("requests without a final event", lambda c: str(c["requests_without_final_event"]))}
{row("duplicate contacts", lambda c: str(c["duplicate_contacts"]))}

{verdict}

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


def summary_of(mode: Mapping[str, Any]) -> dict[str, Any]:
    keys = [
        "start_rate_share", "quota_efficiency", "start_throttled_share",
        "connect_throttled_share", "drain_s", "dead_letters", "requests_without_final_event",
        "duplicate_contacts", "requests_with_a_contact", "finals",
    ]  # fmt: skip
    out = {k: mode[k] for k in keys}
    out["detection_p50_s"] = mode["detection_delay_s"]["p50"]
    out["detection_p95_s"] = mode["detection_delay_s"]["p95"]
    out["phase_shares"] = [p["start_rate_share"] for p in mode["phases"]]
    return out


def summary(figures: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {mode.name: summary_of(figures[mode.name]) for mode in MODES}
    out["acquire_latency"] = figures["acquire_latency"]
    out["targets"] = figures["targets"]
    out["wall_s"] = figures["wall_s"]
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small run; records nothing")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    isolate_environment()
    opts = QUICK if args.quick else FleetOptions()
    stem = "fleet-quick" if args.quick else "fleet"
    runs = BENCH_DIR / ".runs"
    ctx = RunContext(logs=runs / f"{stem}-logs", seed=args.seed)
    say(f"fleet: {opts.requests} requests, workers {[n for n, _ in opts.phases]}")
    figures = anyio.run(measure, opts, ctx)
    if args.quick:
        runs.mkdir(parents=True, exist_ok=True)
        (runs / f"{stem}.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        plot(figures, runs / f"{stem}-start-rate.png")
    else:
        plot(figures, plot_path("fleet-start-rate"))
        record(NAME, figures, markdown(figures))
    print(json.dumps(summary(figures)), flush=True)


if __name__ == "__main__":
    main()
