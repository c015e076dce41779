"""Detection under a shared budget: how soon an agent connection is noticed.

Every contact is started at once (StartWebRTCContact and StartScreenSharing quotas raised, both
in the emulator and in the client), then all of them wait in the emulator's contact-center model
(`bench.center`): one FIFO queue served by `agents` agents, each busy for uniform(`handle_time_s`)
per call, with a patience long enough that nobody hangs up. DescribeContact keeps Connect's
default quota (10/s, burst 15) in the emulator and in the client, so the budget is far too small
to poll every waiting contact often: how it is spent decides how soon connections are noticed.

Three implementations (`--only` picks some), each against a fresh emulator with the same seed and
model, run at the same time (each at most 10 DescribeContact calls/s; the naive one in its own
process):

* ours: the real worker and lifecycle engine, the requests fed through an in-memory queue: moto's
  SQS server hands out 1,000 messages too slowly (about a minute) for the contacts to start at once;
* round_robin: `bench.roundrobin`, one loop cycling through the waiting contacts at the budget rate;
* naive: `bench.naive`, a thread per contact polling every 2 s with no budget.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from orchestrator.connect.operations import Operation
from orchestrator.testing.emulator import EmulatorControl
from orchestrator.testing.processes import emulator_process

from . import analysis, naive
from .center import RAISED, Center, feed, run_worker
from .daemon import worker_logs
from .harness import (
    RunContext,
    Scenario,
    figure,
    num,
    pct,
    ratio,
    run_all,
    say,
    span,
    table,
    times,
)
from .results import note
from .roundrobin import run_round_robin

IMPLEMENTATIONS = ("ours", "round_robin", "naive")


CENTER = Center(
    contacts=1000, agents=450, handle_time_s=(80.0, 120.0), describe_rate=10.0,
    describe_burst=15.0, slack_s=120.0,
)  # fmt: skip


@dataclass(frozen=True)
class DetectionOptions:
    center: Center = CENTER


QUICK = DetectionOptions(
    Center(
        contacts=40, agents=20, handle_time_s=(4.0, 6.0), describe_rate=10.0, describe_burst=15.0,
        slack_s=120.0,
    )
)  # fmt: skip


async def _implementation(name: str, opts: DetectionOptions, ctx: RunContext) -> dict[str, Any]:
    """One implementation against its own emulator: its figures from the emulator's truth."""
    c = opts.center
    async with emulator_process(c.emulator_args(ctx.seed), ctx.log(f"{name}-emulator")) as emu:
        own: dict[str, Any]
        if name == "ours":
            with worker_logs(ctx.log("ours-worker")):
                run = await run_worker(c, emu.url, run="detect", seed=ctx.seed)
            own = {"completed": run.completed, "wall_s": run.wall_s, "finals": run.finals}
        elif name == "round_robin":
            poller = await run_round_robin(
                emu.url, partial(feed, c, emu.url), "detect", c.quotas(), c.deadline_s()
            )
            own = {"poller": poller}
        else:
            log = ctx.log("naive-process")
            own = {"process": await naive.run(emu.url, emu.pid, c.contacts, c.deadline_s(), log)}
        truth = EmulatorControl(emu.url, timeout_s=120)
        contacts, stats = await truth.contacts(), await truth.stats()
    return {**_common(contacts, stats, opts), **own}


def _common(
    contacts: list[dict[str, Any]], stats: dict[str, Any], opts: DetectionOptions
) -> dict[str, Any]:
    ops = analysis.operation_stats(stats)
    return {
        **analysis.detection(contacts, wave_s=opts.center.handle_time_s[0]),
        "start_window_s": analysis.start_window(contacts)["spread_s"],
        "describe_calls": ops[Operation.DESCRIBE_CONTACT]["calls"],
        "describe_throttled": ops[Operation.DESCRIBE_CONTACT]["throttled"],
        "describe_throttled_fraction": ops[Operation.DESCRIBE_CONTACT]["throttled_fraction"],
        "describe_attempts_per_contact": (
            ops[Operation.DESCRIBE_CONTACT]["calls"] / len(contacts) if contacts else math.nan
        ),
        "operations": ops,
    }


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


async def measure(opts: DetectionOptions, ctx: RunContext) -> dict[str, Any]:
    c = opts.center
    impls = [i for i in IMPLEMENTATIONS if ctx.wants(i)]
    say(
        f"detection: {c.contacts} contacts waiting at once, {c.agents} agents, "
        f"handle time {span(*c.handle_time_s)} s, DescribeContact "
        f"{c.describe_rate:g}/s burst {c.describe_burst:g}; "
        f"{', '.join(impls)} side by side (about {c.drain_estimate_s():.0f} s)"
    )
    results = await run_all({name: partial(_implementation, name, opts, ctx) for name in impls})
    theory = c.contacts / (2 * c.describe_rate)
    out: dict[str, Any] = {
        "options": {
            "contacts": c.contacts,
            "agents": c.agents,
            "handle_time_s": list(c.handle_time_s),
            "patience_s": c.patience_s,
            "describe_quota": [c.describe_rate, c.describe_burst],
            "other_quotas": [RAISED, RAISED],
            "drain_estimate_s": c.drain_estimate_s(),
        },
        "round_robin_theory_mean_s": theory,
        **results,
    }
    if "ours" in results:
        out["ratios"] = {
            other: comparison(results["ours"], results[other]) for other in impls if other != "ours"
        }
    for name, r in results.items():
        d = r["detection_delay_s"]
        say(
            f"  {name:<12} detection p50 {d['p50']:6.1f} s  p95 {d['p95']:6.1f} s  "
            f"p99 {d['p99']:6.1f} s  polls/contact {r['describe_calls_per_contact']['mean']:5.1f}"
            f"  429s {r['describe_throttled']}  undetected {r['undetected']}"
        )
    say(f"  round-robin expectation N/(2 x rate) = {theory:.0f} s for the initial N")
    return out


NAMES = {"ours": "contact-orchestrator", "round_robin": "round-robin", "naive": "naive"}
DETECTION_HEADER = [
    "implementation", "detection p50", "p95", "p99", "mean",
    "DescribeContact per contact (answered)", "(attempted)", "429s", "undetected / never connected",
]  # fmt: skip


def detection_row(name: str, d: Mapping[str, Any]) -> list[str]:
    delay = d["detection_delay_s"]
    return [
        NAMES.get(name, name),
        *(num(delay[q], 1, " s") for q in ("p50", "p95", "p99", "mean")),
        num(d["describe_calls_per_contact"]["mean"], 1),
        num(d["describe_attempts_per_contact"], 1),
        f"{num(d['describe_throttled'])} ({pct(d['describe_throttled_fraction'])})",
        f"{num(d['undetected'])} / {num(d['never_connected'])}",
    ]


def _quantiles(d: Mapping[str, Any]) -> str:
    return " / ".join(num(d[q], 1) for q in ("p50", "p95", "p99")) + " s"


def markdown(d: Mapping[str, Any]) -> str:
    o = d["options"]
    impls = [i for i in IMPLEMENTATIONS if i in d]
    parts = [
        "## 2. Detection under a shared budget",
        f"{o['contacts']:,} contacts started at once (StartWebRTCContact and StartScreenSharing "
        f"quotas raised to {o['other_quotas'][0]:g}/s in the emulator and in the client) wait in "
        f"the emulator's contact-center model: one FIFO queue, {o['agents']} agents, handle time "
        f"uniform {o['handle_time_s'][0]:g}-{o['handle_time_s'][1]:g} s, patience "
        f"{o['patience_s']:g} s (nobody hangs up). The first {o['agents']} contacts get an agent "
        "at once; the others as agents free up, oldest first, the last after about "
        f"{o['drain_estimate_s']:.0f} s. DescribeContact keeps Connect's default quota "
        f"({o['describe_quota'][0]:g}/s, burst {o['describe_quota'][1]:g}) in the emulator "
        "and in every client budget. Each implementation runs against its own emulator "
        "(same seed, same model), the three at the same time. Ours is the real `Worker` and "
        "`LifecycleEngine` with every watch setting at its default (queue-aware polling "
        "included), fed through `orchestrator.testing.memory_queue.MemoryQueue`: moto's SQS "
        "server hands out 1,000 messages too slowly (about a minute) for the contacts to start "
        "at once.",
        "Detection delay = `ScreenSharingStartedAt - ConnectedToAgentAt` per contact (emulator "
        "ground truth): the time from the agent connecting to screen sharing starting. "
        "*Answered* DescribeContact calls are the emulator's per-contact count; *attempted* "
        "include the throttled ones. *Undetected*: an agent connected but screen sharing never "
        "started (the call ended first, or the implementation gave up).",
        table(DETECTION_HEADER, [detection_row(name, d[name]) for name in impls]),
    ]
    phased = [name for name in impls if d[name].get("detection_by_phase")]
    if phased:
        by_phase = d[phased[0]]["detection_by_phase"]
        parts.append(
            "By phase: the *first wave* are the contacts every free agent takes at once (within "
            f"{o['handle_time_s'][0]:g} s, the shortest handle time, of the first start; "
            f"{num(by_phase['first_wave_s']['count'])} contacts for {NAMES[phased[0]]}): nothing "
            "can detect them faster than the budget allows polls, one per contact. The *queued* "
            f"contacts ({num(by_phase['queued_s']['count'])}) connect one by one, oldest first, as "
            "agents free up: there the choice of whom to poll matters."
        )
        header = ["implementation", "first wave p50 / p95 / p99", "queued p50 / p95 / p99"]
        waves = ("first_wave_s", "queued_s")
        rows = [
            [NAMES[n], *(_quantiles(d[n]["detection_by_phase"][k]) for k in waves)] for n in phased
        ]
        parts.append(table(header, rows))
    if "ours" in d and "round_robin" in d:
        r = d["ratios"]["round_robin"]
        qs = ("p50", "p95", "p99")
        rows = [
            ["all contacts (below 1: ours is better)",
             *(times(r[f"detection_{q}"]) for q in (*qs, "mean")),
             times(r["describe_calls_per_contact"])],
            ["first wave", *(times(r.get(f"first_wave_{q}")) for q in qs), "", ""],
            ["queued", *(times(r.get(f"queued_{q}")) for q in qs), "", ""],
        ]  # fmt: skip
        header = ["ours / round-robin", "p50", "p95", "p99", "mean", "DescribeContact per contact"]
        parts.append(table(header, rows))
    measured = d.get("round_robin", {}).get("detection_delay_s", {}).get("mean")
    parts += [
        f"Round-robin in theory: a contact that connects at a random moment waits half a cycle, "
        f"N / (2 x rate) = {o['contacts']:,} / (2 x {o['describe_quota'][0]:g}) = "
        f"**{num(d['round_robin_theory_mean_s'], 0, ' s')}** for the initial N (the ring "
        "shrinks as contacts are served, so later contacts wait less)."
        + (f" Measured mean: {num(measured, 1, ' s')}." if measured is not None else ""),
        "### What the FIFO queue model implies for polling",
        note("fifo-policy"),
    ]
    return "\n\n".join(parts)


#: (key under scenarios.detection, label), in the order drawn.
POLICIES = (("ours", "ours"), ("round_robin", "round robin"), ("naive", "naive"))


def policies(detection: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Detection delay percentiles per implementation, from the scenario's figures."""
    delays = {key: detection[key]["detection_delay_s"] for key, _ in POLICIES}
    return {
        key: {q: float(d[q]) for q in ("p50", "p95", "p99", "count")}
        | {"contacts": float(detection[key].get("contacts", math.nan))}
        for key, d in delays.items()
    }


def plot(detection: Mapping[str, Any], out: Path) -> None:
    """Grouped bars of the detection delay's p50/p95/p99 for ours, round robin and naive."""
    figures = policies(detection)
    width = 0.8 / 3
    with figure(out, figsize=(8, 4.8)) as (_, axes):
        for i, quantile in enumerate(("p50", "p95", "p99")):
            xs = [j + (i - 1) * width for j in range(len(POLICIES))]
            values = [figures[key][quantile] for key, _ in POLICIES]
            bars = axes.bar(xs, values, width, label=quantile)
            axes.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=8, padding=2)
        labels = []
        for key, name in POLICIES:
            detected, contacts = figures[key]["count"], figures[key]["contacts"]
            missed = math.isfinite(contacts) and detected < contacts
            labels.append(
                name + (f"\n({detected:.0f} of {contacts:.0f} detected)" if missed else "")
            )
        axes.set_xticks(range(len(POLICIES)), labels)
        axes.set_ylabel("detection delay (s): screen sharing started - agent connected")
        options = detection.get("options", {})
        axes.set_title(
            f"Detection delay by polling policy ({options.get('contacts', '?')} contacts, "
            f"{options.get('agents', '?')} agents)",
            fontsize=10,
        )
        axes.legend()


SCENARIO = Scenario(
    "detection", "detection under a shared DescribeContact budget, against round-robin and naive",
    DetectionOptions(), QUICK, measure, markdown, seed=20261121, plot=plot,
    plot_name="detection-policies", variants=IMPLEMENTATIONS,
)  # fmt: skip
