"""Polling only: does the watch spend the DescribeContact budget it is given? The budget fill
(the `[watch]` defaults) against the backoff alone (`fill_budget_share = 0`, the policy before
it), with round-robin at the same budget as the yardstick, contact events off.

`python -m bench polling`. One queue served by `agents` agents, each busy uniform(`handle_time_s`)
per call: another client's contacts take every agent first (`fillers`), then `waiting` contacts
are started at once and, once agents free up, one more each time one of them gets an agent
(`bench.center.feed`), for `steady_s`: `waiting` wait at any time, and the figures of detection
are those of the contacts connected then. For each number waiting and each service order, three
runs against fresh emulators with the same seed and the same DescribeContact quota (10/s burst 15
in the emulator and in each client's budget):

* budget_fill: the real worker, `[watch]` defaults (queue-aware polling, the budget fill);
* backoff_only: the same worker with `[watch] fill_budget_share = 0`;
* round_robin: `bench.roundrobin`, one loop polling the waiting contacts in turn at the budget's
  rate (no backoff, no queue awareness).

Service order (the emulator's `--service-order`): "fifo", a free agent takes the oldest waiting
contact; "random", a uniformly random one (skills-based routing seen from one queue), where
queue-aware polling finds the queue is not FIFO and the budget decides.

Worker timing is real, so the same seed gives figures a few tenths of a second apart: a full run
measures the combination nearest its target (or furthest past it) once more, and records both.
`--only ORDER-WAITING` (e.g. `random-120`, repeatable) runs those combinations alone.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from orchestrator.testing.emulator import EmulatorControl
from orchestrator.testing.processes import emulator_process

from . import analysis
from .center import Center, WorkerRun, describe_figures, feed, run_worker, start_fillers
from .daemon import worker_logs
from .harness import (
    RunContext,
    Scenario,
    Target,
    figure,
    fmt,
    request_id,
    run_all,
    say,
    span,
    table,
)
from .roundrobin import run_round_robin

#: The service orders of the emulator's contact-center model (`--service-order`).
ORDERS = ("fifo", "random")
#: The worker's policies: the `[watch]` settings that make each (the others at their defaults).
POLICIES: Mapping[str, Mapping[str, Any]] = {
    "budget_fill": {},
    "backoff_only": {"fill_budget_share": 0},
}
IMPLEMENTATIONS = (*POLICIES, "round_robin")
#: Detection p50 of the budget fill / round-robin's at the same budget, at most (issue 24).
TARGET_VS_ROUND_ROBIN = {"random": 1.2, "fifo": 0.5}


@dataclass(frozen=True)
class PollingOptions:
    #: How many of the worker's contacts wait at a time (each number its own runs).
    waiting: tuple[int, ...] = (30, 120)
    agents: int = 60
    handle_time_s: tuple[float, float] = (40.0, 60.0)
    #: How long the steady state lasts once agents start to free up: one contact starts each
    #: time one gets an agent, so that `waiting` wait at any time.
    steady_s: float = 120.0
    #: How long the runs go on after it, so that every connection in it is noticed.
    settle_s: float = 30.0
    #: The DescribeContact quota (rate, burst).
    budget: tuple[float, float] = (10.0, 15.0)

    def center(self, waiting: int) -> Center:
        rate, burst = self.budget
        return Center(
            waiting, self.agents, self.handle_time_s, rate, burst, fillers=self.agents,
            slack_s=self.settle_s, steady_s=self.steady_s,
        )  # fmt: skip


QUICK = PollingOptions(waiting=(6,), agents=3, handle_time_s=(6.0, 8.0), steady_s=12, settle_s=8)


def key(order: str, waiting: int) -> str:
    """A combination of service order and contacts waiting: `random-120` (also `--only`)."""
    return f"{order}-{waiting}"


def steady_figures(run: WorkerRun, center: Center, stopped_at: float) -> dict[str, Any]:
    """`describe_figures` of the contacts connected in the steady state (until the last
    arrival), how many waited on average then, and the rate DescribeContact was spent at over
    the whole run (from the first start to the stop), from the emulator's ground truth."""
    t0 = min((float(c["CreatedAt"]) for c in run.contacts), default=math.nan)
    steady = (t0 + center.handle_time_s[0], t0 + center.steady_until_s())
    connected = [
        c for c in run.contacts
        if c.get("ConnectedToAgentAt") is not None and c["ConnectedToAgentAt"] <= steady[1]
    ]  # fmt: skip
    figures = describe_figures(dataclasses.replace(run, contacts=connected))
    span_s = stopped_at - t0
    calls = sum(int(c.get("DescribeContactCalls", 0)) for c in run.contacts)

    def waiting(at: float) -> int:
        return sum(
            1 for c in run.contacts
            if c["CreatedAt"] <= at < (c.get("ConnectedToAgentAt") or math.inf)
        )  # fmt: skip

    samples = [waiting(at) for at in _range(*steady)]
    return {
        **figures,
        "waiting_mean": sum(samples) / len(samples) if samples else math.nan,
        "describe_per_s": calls / span_s if span_s > 0 else math.nan,
    }


def _range(start: float, end: float, step: float = 1.0) -> list[float]:
    return [start + k * step for k in range(max(0, math.floor((end - start) / step)))]


def comparison(runs: Mapping[str, Mapping[str, Any]], order: str, rate: float) -> dict[str, Any]:
    """Each policy's detection p50 against round-robin's, and the share of the budget each
    spent over its run (contacts wait all along)."""
    rr = runs["round_robin"]["detection_delay_s"]["p50"]
    out: dict[str, Any] = {
        "target": TARGET_VS_ROUND_ROBIN[order],
        "budget_used": {name: run["describe_per_s"] / rate for name, run in runs.items()},
    }
    for name in POLICIES:
        p50 = runs[name]["detection_delay_s"]["p50"]
        out[f"{name}_vs_round_robin"] = p50 / rr if rr > 0 else math.nan
    out["margin"] = out["budget_fill_vs_round_robin"] / out["target"]
    return out


async def run_combinations(
    opts: PollingOptions, ctx: RunContext, wanted: Sequence[tuple[str, int]], prefix: str
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every implementation at each (order, waiting) of `wanted`, all at the same time:
    {key: {implementation: figures}}."""

    async def one(order: str, waiting: int, implementation: str) -> dict[str, Any]:
        center = opts.center(waiting)
        name = f"{prefix}-{key(order, waiting)}-{implementation}"
        args = [*center.emulator_args(ctx.seed), "--service-order", order]
        async with emulator_process(args, ctx.log(f"{name}-emulator")) as emu:
            if implementation == "round_robin":
                await start_fillers(emu.url, center.fillers)
                poller = await run_round_robin(
                    emu.url, partial(feed, center, emu.url), name, center.quotas(),
                    center.deadline_s(),
                )  # fmt: skip
                stopped_at = time.time()
                truth = EmulatorControl(emu.url, timeout_s=120)
                fed = poller["started"] + poller["start_failures"]
                ids = [request_id(name, i) for i in range(fed)]
                ours, _ = analysis.match_requests(await truth.contacts(), ids)
                run = WorkerRun(
                    list(ours.values()), await truth.stats(), False, poller["wall_s"],
                    finals={}, detected_via={}, contact_events={}, passed_wakes={},
                )  # fmt: skip
            else:
                watch = POLICIES[implementation]
                run = await run_worker(center, emu.url, run=name, seed=ctx.seed, watch=watch)
                stopped_at = time.time()
        return steady_figures(run, center, stopped_at)

    jobs = {
        (order, waiting, impl): partial(one, order, waiting, impl)
        for order, waiting in wanted
        for impl in IMPLEMENTATIONS
    }
    with worker_logs(ctx.log(f"{prefix}-workers")):
        done = await run_all(jobs)
    return {
        key(order, waiting): {impl: done[(order, waiting, impl)] for impl in IMPLEMENTATIONS}
        for order, waiting in wanted
    }


def polling_figures(
    results: Mapping[str, dict[str, dict[str, Any]]], opts: PollingOptions
) -> dict[str, Any]:
    orders = {name: name.split("-")[0] for name in results}
    return {
        "runs": dict(results),
        "comparisons": {
            name: comparison(runs, orders[name], opts.budget[0]) for name, runs in results.items()
        },
    }


def targets(figures: Mapping[str, Any]) -> dict[str, Any]:
    """Detection p50 against round-robin per combination (and in the rerun), no 429s."""
    out: dict[str, Any] = {
        "vs_round_robin": {
            name: Target(f"comparisons.{name}.budget_fill_vs_round_robin", "<=", c["target"]).check(
                figures
            )
            for name, c in figures["comparisons"].items()
        }
    }
    rerun = figures.get("rerun")
    if rerun:
        name = rerun["combination"]
        target = figures["comparisons"][name]["target"]
        out["rerun_vs_round_robin"] = Target(
            "rerun.comparison.budget_fill_vs_round_robin", "<=", target
        ).check(figures)
    throttled = sum(
        run["describe_throttled"]
        for runs in [*figures["runs"].values(), *([rerun["runs"]] if rerun else [])]
        for impl, run in runs.items()
        if impl != "round_robin"
    )
    out["no_429s"] = {"op": "==", "threshold": 0, "value": throttled, "pass": throttled == 0}
    return out


async def measure(opts: PollingOptions, ctx: RunContext) -> dict[str, Any]:
    """One wanted combination after the other, its three implementations at once (more at once
    starve the benchmark's process, which runs the workers and round-robin, on a busy machine);
    in a full run, the one nearest (or furthest past) its target once more."""
    wanted = [(o, n) for n in opts.waiting for o in ORDERS if ctx.wants(key(o, n))]
    longest = sum(opts.center(n).deadline_s() for _, n in wanted)
    say(
        f"polling: {', '.join(str(n) for n in opts.waiting)} contacts waiting, {opts.agents} "
        f"agents, handle {span(*opts.handle_time_s)} s, DescribeContact {opts.budget[0]:g}/s; "
        f"{', '.join(IMPLEMENTATIONS)} side by side (about {longest:.0f} s)"
    )
    began = time.monotonic()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for combination in wanted:
        results.update(await run_combinations(opts, ctx, [combination], "polling"))
    figures = polling_figures(results, opts)
    show(figures["runs"], figures["comparisons"])
    if not ctx.quick:
        worst = max(figures["comparisons"], key=lambda n: figures["comparisons"][n]["margin"])
        say(f"polling: measuring {worst} once more (run-to-run noise)")
        order, waiting = worst.split("-")
        again = polling_figures(
            await run_combinations(opts, ctx, [(order, int(waiting))], "polling-rerun"), opts
        )
        show(again["runs"], again["comparisons"])
        figures["rerun"] = {
            "combination": worst,
            "runs": again["runs"][worst],
            "comparison": again["comparisons"][worst],
        }
    figures["targets"] = targets(figures)
    figures["options"] = {
        "waiting": list(opts.waiting), "agents": opts.agents, "fillers": opts.agents,
        "handle_time_s": list(opts.handle_time_s), "budget": list(opts.budget),
        "steady_s": opts.steady_s, "settle_s": opts.settle_s,
        "quick": ctx.quick, "only": sorted(ctx.only),
    }  # fmt: skip
    figures["wall_s"] = time.monotonic() - began
    return figures


def show(runs: Mapping[str, Mapping[str, Any]], comparisons: Mapping[str, Any]) -> None:
    for name, by_impl in runs.items():
        for impl, r in by_impl.items():
            d = r["detection_delay_s"]
            say(
                f"  {name:<11} {impl:<13} p50 {fmt(d['p50'])} s  p95 {fmt(d['p95'])} s  "
                f"DescribeContact {fmt(r['describe_per_s'], 1)}/s  429s {r['describe_throttled']}"
                f"  never noticed {r['undetected']}"
            )
        c = comparisons[name]
        say(
            f"  {name:<11} p50 / round-robin: budget fill {fmt(c['budget_fill_vs_round_robin'])}"
            f", backoff only {fmt(c['backoff_only_vs_round_robin'])} (target <= {c['target']:g})"
        )


NAMES = {"budget_fill": "budget fill", "backoff_only": "backoff only", "round_robin": "round-robin"}


def rows(runs: Mapping[str, Mapping[str, Any]], rate: float) -> list[list[str]]:
    out = []
    for name, by_impl in runs.items():
        order, waiting = name.split("-")
        for impl, r in by_impl.items():
            d = r["detection_delay_s"]
            out.append(
                [
                    order.upper(), waiting, NAMES[impl], fmt(d["p50"]), fmt(d["p95"]),
                    f"{fmt(r['describe_per_s'], 1)} ({fmt(100 * r['describe_per_s'] / rate, 0)} %)",
                    fmt(r["describe_calls_per_contact"]["mean"], 1),
                    str(r["describe_throttled"]), str(r["undetected"]),
                ]
            )  # fmt: skip
    return out


HEADER = [
    "order", "waiting", "policy", "p50 (s)", "p95 (s)", "DescribeContact/s (budget)",
    "calls/contact", "429s", "never noticed",
]  # fmt: skip


def markdown(figures: Mapping[str, Any]) -> str:
    o, t = figures["options"], figures["targets"]
    rate = o["budget"][0]
    setup = " ".join(
        [
            f"`python -m bench polling` (wall time {figures['wall_s']:.0f} s"
            f"{' with the rerun' if figures.get('rerun') else ''};",
            "one combination after the other, its three implementations at the same time, each",
            "on its own emulator with the same seed). One queue served by",
            f"{o['agents']} agents (handle time {span(*o['handle_time_s'])} s): {o['fillers']}",
            "contacts started first by another client take every agent, then",
            " or ".join(str(n) for n in o["waiting"]),
            "contacts are started at once and, once agents free up, one more each time one of",
            f"them gets an agent, for {o['steady_s']:g} s (the steady state: that many wait at",
            f"any time); the run stops {o['settle_s']:g} s later. Contact events off.",
            "DescribeContact",
            f"{rate:g}/s burst {o['budget'][1]:g} in the emulator and in every client's budget.",
            "*Budget fill* is the worker with the `[watch]` defaults; *backoff only* the same",
            "worker with `fill_budget_share = 0` (the policy before the fill); *round-robin* one",
            "loop polling the waiting contacts in turn at the budget's rate. Service order: FIFO",
            "(a free agent takes the oldest waiting contact) or RANDOM (a uniformly random one).",
            "DescribeContact/s: the calls for the contacts of each run, from its first start",
            "until it stopped (contacts wait all along), over that time; the figures of",
            "detection are those of the contacts connected in the steady state.",
        ]
    )
    parts = ["## Polling only: spending the DescribeContact budget", setup]
    parts.append(table(HEADER, rows(figures["runs"], rate)))
    lines = []
    for name, c in figures["comparisons"].items():
        target = t["vs_round_robin"][name]
        lines.append(
            f"- {name.upper()}: detection p50 / round-robin's: budget fill "
            f"{fmt(c['budget_fill_vs_round_robin'])} (target <= {c['target']:g}: "
            f"{'met' if target['pass'] else '**missed**'}), backoff only "
            f"{fmt(c['backoff_only_vs_round_robin'])}"
        )
    parts.append("\n".join(lines))
    rerun = figures.get("rerun")
    if rerun:
        again = rerun["comparison"]["budget_fill_vs_round_robin"]
        parts.append(
            f"The combination nearest its target, {rerun['combination'].upper()}, measured once "
            "more (same seed; worker timing is real, so figures move by a few tenths of a "
            f"second): budget fill / round-robin {fmt(again)} "
            f"({'met' if t['rerun_vs_round_robin']['pass'] else '**missed**'})."
        )
        parts.append(table(HEADER, rows({rerun["combination"]: rerun["runs"]}, rate)))
    parts.append(
        f"429s from the worker's DescribeContact calls: {t['no_429s']['value']} "
        f"({'met' if t['no_429s']['pass'] else '**missed**'}: none allowed)."
    )
    parts.append("![detection delay by policy](plots/polling-policies.png)")
    return "\n\n".join(parts) + "\n"


def plot(figures: Mapping[str, Any], path: Any) -> None:
    runs = figures["runs"]
    names = list(runs)
    width = 0.8 / len(IMPLEMENTATIONS)
    with figure(path, figsize=(max(6.0, 2.2 * len(names)), 4.5)) as (_, ax):
        for i, impl in enumerate(IMPLEMENTATIONS):
            xs = [j + (i - 1) * width for j in range(len(names))]
            p50 = [runs[n][impl]["detection_delay_s"]["p50"] for n in names]
            bars = ax.bar(xs, p50, width, label=NAMES[impl])
            ax.bar_label(bars, fmt="%.1f", fontsize=8)
        labels = [f"{n.split('-')[0].upper()}\n{n.split('-')[1]} waiting" for n in names]
        ax.set_xticks(range(len(names)), labels, fontsize=8)
        ax.set_ylabel("detection delay p50 (s)")
        ax.set_title(f"Polling only, DescribeContact {figures['options']['budget'][0]:g}/s")
        ax.legend()
        ax.grid(True, axis="y", alpha=0.3)


SCENARIO = Scenario(
    "polling", "polling only: the budget fill vs backoff only vs round-robin, contact events off",
    PollingOptions(), QUICK, measure, markdown, seed=20261202, plot=plot,
    plot_name="polling-policies", variants=tuple(key(o, n) for n in (30, 120) for o in ORDERS),
)  # fmt: skip
