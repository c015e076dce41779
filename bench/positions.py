"""Queue positions: what the waiting customer is told of their place in line, against the truth.

`python -m bench positions`. One queue served by one agent (free every ~3 s), `background`
contacts of another application waiting ahead (the emulator's `--background-contacts`), then the
worker starts `contacts` requests at Connect's default start rate (2/s); GetContactMetrics at 2/s
burst 5, in the emulator and in the worker's `[connect]`. Three variants at the same time, each
on its own emulator with the same seed:

* `ours`: the `[queue_position]` defaults (ask where the answer most likely changed, infer in
  between);
* `fixed_10s`: the naive approach, every waiting contact asked every 10 s, nothing inferred;
* `no_inference`: our choice of whom to ask, but only Connect's answers told.

Figures, per variant: the share of one-second samples (while a contact truly waits in queue, from
its first position on) where the position its requester last heard is within 1 of the truth
(computed from the emulator's ground truth: every contact's enqueue and departure times, FIFO),
the time from `contact.started` to the first position, GetContactMetrics calls per contact and
throttled calls.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiobotocore.session import AioSession

from orchestrator.connect.operations import DEFAULT_QUOTAS, Operation
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.metrics import Metrics
from orchestrator.testing.emulator import EmulatorControl
from orchestrator.testing.processes import emulator_process, quota_args
from orchestrator.testing.stats import distribution

from . import analysis
from .daemon import FinalCounter, memory_settings, memory_worker, run_until, worker_logs
from .harness import (
    RunContext,
    Scenario,
    Target,
    fmt,
    pct,
    request_body,
    request_id,
    run_all,
    say,
    span,
    table,
    verdict,
)

#: The variants: their `[queue_position]` settings.
VARIANTS: Mapping[str, Mapping[str, Any]] = {
    "ours": {},
    "fixed_10s": {"fixed_refresh_s": 10.0, "infer": False},
    "no_inference": {"infer": False},
}


@dataclass(frozen=True)
class PositionsOptions:
    #: The worker's contacts, started at the start rate into the queue.
    contacts: int = 30
    #: Another application's contacts waiting ahead of ours.
    background: int = 8
    #: One agent, busy this long per call: a departure every ~3 s.
    handle_time_s: tuple[float, float] = (2.5, 3.5)
    #: GetContactMetrics quota (rate, burst), emulator and worker alike.
    metrics_quota: tuple[float, float] = (2.0, 5.0)
    #: How long after the expected drain a run may go on.
    slack_s: float = 90.0

    def drain_estimate_s(self) -> float:
        return (self.contacts + self.background + 1) * sum(self.handle_time_s) / 2

    def quotas(self) -> dict[str, tuple[float, float]]:
        quotas = {str(op): (q.rate, q.burst) for op, q in DEFAULT_QUOTAS.items()}
        quotas[Operation.GET_CONTACT_METRICS] = self.metrics_quota
        return quotas

    def emulator_args(self, seed: int) -> list[str]:
        return [
            "--seed", str(seed), "--max-concurrent-calls", "0", "--agents", "1",
            "--handle-time", span(*self.handle_time_s), "--patience", "3600:3600",
            # One more: the agent takes the first at once, `background` wait ahead.
            "--background-contacts", str(self.background + 1),
            *quota_args(self.quotas()),
        ]  # fmt: skip


QUICK = PositionsOptions(contacts=8, background=3, handle_time_s=(1.5, 2.5), slack_s=60.0)


class PositionLog:
    """An event sink that keeps what each requester heard: when its contact started, and every
    position told, with the event's time."""

    name = "positions-log"

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.heard: dict[str, list[tuple[float, int, str]]] = {}

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        for event in events:
            at = event.time.timestamp()
            if event.type is EventType.STARTED:
                self.started[event.request_id] = at
            elif event.type is EventType.QUEUE_POSITION:
                told = (at, int(event.data["position"]), str(event.data["source"]))
                self.heard.setdefault(event.request_id, []).append(told)


def _left(contact: Mapping[str, Any]) -> float:
    """When a contact left the queue (an agent, or it ended); infinity while it waits."""
    for key in ("ConnectedToAgentAt", "DisconnectedAt"):
        if contact.get(key) is not None:
            return float(contact[key])
    return math.inf


def true_position(everyone: Sequence[Mapping[str, Any]], me: Mapping[str, Any], at: float) -> int:
    """`me`'s place in line at `at`: 1 + the contacts (any application's) enqueued before it and
    still waiting then, FIFO, as the emulator answers GetContactMetrics."""
    mine = float(me["EnqueuedAt"])
    return 1 + sum(
        1
        for c in everyone
        if c.get("EnqueuedAt") is not None
        and float(c["EnqueuedAt"]) < mine
        and float(c["EnqueuedAt"]) <= at < _left(c)
    )


def accuracy(
    log: PositionLog,
    ours: Mapping[str, Mapping[str, Any]],
    everyone: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """One-second samples of each contact while it waits, from its first position on: the
    position last heard against the truth."""
    within, samples, errors = 0, 0, []
    firsts: list[float] = []
    for rid, contact in ours.items():
        heard = log.heard.get(rid, [])
        if rid in log.started and heard:
            firsts.append(heard[0][0] - log.started[rid])
        if not heard or contact.get("EnqueuedAt") is None:
            continue
        t, left, index = heard[0][0], _left(contact), 0
        while t < left:
            while index + 1 < len(heard) and heard[index + 1][0] <= t:
                index += 1
            error = abs(heard[index][1] - true_position(everyone, contact, t))
            errors.append(float(error))
            samples += 1
            within += error <= 1
            t += 1.0
    told = [h for rid in ours for h in log.heard.get(rid, [])]
    return {
        "samples": samples,
        "within_one": within / samples if samples else math.nan,
        "error": distribution(errors),
        "first_position_s": distribution(firsts),
        "without_position": sum(1 for rid in ours if not log.heard.get(rid)),
        "events": len(told),
        "inferred_events": sum(1 for h in told if h[2] == "inferred"),
    }


async def run_variant(
    opts: PositionsOptions, ctx: RunContext, variant: str, url: str
) -> dict[str, Any]:
    run = f"positions-{variant}"
    n = opts.contacts
    settings = memory_settings(run, n, url, opts.quotas(), queue_position=dict(VARIANTS[variant]))
    counter, log = FinalCounter(expected=n), PositionLog()
    async with memory_worker(
        settings, session=AioSession(), metrics=Metrics(), extra_sinks=[counter, log],
        seed=ctx.seed,
    ) as (worker, queue):  # fmt: skip
        for i in range(n):
            queue.send(request_body(run, i))
        completed = await run_until(worker, counter, opts.drain_estimate_s() + opts.slack_s)
    truth = EmulatorControl(url, timeout_s=120)
    contacts = await truth.contacts()
    ours, _ = analysis.match_requests(contacts, [request_id(run, i) for i in range(n)])
    everyone = contacts + await truth.background()
    stats = (await truth.stats())["operations"][Operation.GET_CONTACT_METRICS]
    return {
        "variant": variant,
        "settings": dict(VARIANTS[variant]),
        "completed": completed,
        **accuracy(log, ours, everyone),
        "calls": stats["calls"],
        "calls_per_contact": stats["calls"] / n if n else math.nan,
        "throttled": stats["throttled"],
    }


async def measure(opts: PositionsOptions, ctx: RunContext) -> dict[str, Any]:
    wanted = [v for v in VARIANTS if ctx.wants(v)]
    say(
        f"positions: {opts.contacts} contacts behind {opts.background} of another application, "
        f"one agent (handle {span(*opts.handle_time_s)} s), GetContactMetrics "
        f"{opts.metrics_quota[0]:g}/s; {', '.join(wanted)} at once "
        f"(about {opts.drain_estimate_s():.0f} s)"
    )
    began = time.monotonic()

    async def one(variant: str) -> dict[str, Any]:
        args = opts.emulator_args(ctx.seed)
        async with emulator_process(args, ctx.log(f"positions-{variant}-emulator")) as emu:
            return await run_variant(opts, ctx, variant, emu.url)

    with worker_logs(ctx.log("positions-workers")):
        variants = await run_all({v: partial(one, v) for v in wanted})
    for name, v in variants.items():
        say(
            f"  {name:<13} within 1: {pct(v['within_one'])}  first position p95 "
            f"{fmt(v['first_position_s']['p95'])} s  calls/contact {fmt(v['calls_per_contact'], 1)}"
            f"  429s {v['throttled']}"
        )
    return {
        "options": {
            "contacts": opts.contacts,
            "background": opts.background,
            "handle_time_s": list(opts.handle_time_s),
            "metrics_quota": list(opts.metrics_quota),
            "quick": ctx.quick,
            "only": sorted(ctx.only),
        },
        "variants": variants,
        "wall_s": time.monotonic() - began,
    }


def markdown(figures: Mapping[str, Any]) -> str:
    o, t = figures["options"], figures.get("targets", {})
    rows = [
        [
            name,
            pct(v["within_one"]),
            fmt(v["error"]["mean"]),
            fmt(v["first_position_s"]["p50"]),
            fmt(v["first_position_s"]["p95"]),
            fmt(v["calls_per_contact"], 1),
            str(v["throttled"]),
            f"{v['events']} ({v['inferred_events']} inferred)",
        ]
        for name, v in figures["variants"].items()
    ]
    header = [
        "variant", "heard within 1 of the truth", "mean error", "first position p50 (s)",
        "p95 (s)", "GetContactMetrics calls/contact", "429s", "position events",
    ]  # fmt: skip
    setup = " ".join(
        [
            f"`python -m bench positions` (wall time {figures['wall_s']:.0f} s; the variants at",
            "the same time, each on its own emulator with the same seed). One queue, one agent",
            f"(handle time {span(*o['handle_time_s'])} s), {o['background']} contacts of another",
            f"application waiting ahead, then {o['contacts']} of ours started at 2/s;",
            f"GetContactMetrics at {o['metrics_quota'][0]:g}/s burst {o['metrics_quota'][1]:g}.",
            "`ours`: the `[queue_position]` defaults; `fixed_10s`: every contact asked every",
            "10 s, nothing inferred (the naive approach); `no_inference`: our choice of whom to",
            "ask, only answers told. Samples: every second of each contact's wait from its first",
            "position on; the truth from the emulator's enqueue and departure times (FIFO).",
        ]
    )
    lines = [
        f"- {name.replace('_', ' ')}: {verdict(target)} ({fmt(target.get('value'))}, target "
        f"{target.get('op')} {target.get('threshold')})"
        for name, target in t.items()
    ]
    parts = ["## Queue positions told to waiting customers", setup, table(header, rows)]
    if lines:
        parts.append("Targets (ours):\n\n" + "\n".join(lines))
    if o.get("quick"):
        parts.append("Quick run: small sizes, the figures only prove the scenario runs.")
    return "\n\n".join(parts) + "\n"


SCENARIO = Scenario(
    "positions", "queue positions told to waiting customers vs the truth", PositionsOptions(),
    QUICK, measure, markdown, seed=20261203,
    targets={
        "within_one": Target("variants.ours.within_one", ">=", 0.95),
        "first_position_p95_s": Target("variants.ours.first_position_s.p95", "<=", 5.0),
        "throttled": Target("variants.ours.throttled", "==", 0),
    },
    variants=tuple(VARIANTS),
)  # fmt: skip
