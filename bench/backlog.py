"""Backlog under restarts: a queued backlog drained by three `orchestrator run` processes at
Connect's real StartWebRTCContact quota while they are restarted (rolling SIGTERMs and SIGKILLs,
each worker replaced at once), admission by start capacity against deep admission, side by side.

`python -m bench backlog`. The three modes (`--only` picks some) run at the same time, each on its
own emulator (its own account quota) and request queue, with the same restart schedule
(`bench.drain`).
"""

from __future__ import annotations

import math
import signal
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from orchestrator.testing.processes import sqs_server_process
from orchestrator.testing.worker_logs import most_waiting_to_start
from orchestrator.testing.workers import WorkerProcess

from . import analysis
from .drain import MAX_RECEIVE_COUNT, Drain, Mode, drain, drained, figures, share
from .harness import RunContext, Scenario, Target, figure, run_all, say, verdict

#: Connect's default StartWebRTCContact quota (per account and region).
START_RATE, START_BURST = 2.0, 5.0


MODES = (
    Mode("capacity", "admission by start capacity, static shares (quota_share 1/3)", {}),
    Mode("fleet", "admission by start capacity, fleet mode (Redis)", {}, redis=True),
    # Before admission by start capacity only max_in_flight bounded what a worker received:
    # a window of an hour at the start rate makes max_waiting_to_start (1000) the bound.
    Mode("deep", "max_in_flight-bound admission (the old behaviour)", {
        "QUEUE__MAX_WAITING_TO_START": 1000, "QUEUE__MAX_IN_FLIGHT": 1000,
        "QUEUE__ADMISSION_WINDOW_S": 3600,
    }),
)  # fmt: skip


@dataclass(frozen=True)
class BacklogOptions:
    requests: int = 160
    workers: int = 3
    #: (seconds after the workers started, signal to the oldest running worker), then replaced.
    restarts: tuple[tuple[float, str], ...] = tuple(
        (10.0 + 8.0 * i, "KILL" if i in (2, 5) else "TERM") for i in range(8)
    )
    start_rate: float = START_RATE
    start_burst: float = START_BURST
    agent_delay: str = "2:10"
    talk_time: str = "30:120"
    #: DescribeContact and StartScreenSharing (rate, burst) for the emulator and the workers
    #: (None: Connect's defaults, as deployed).
    other_quotas: tuple[float, float] | None = None
    #: Worker settings beyond the modes' (empty: the defaults, as deployed).
    worker_settings: Mapping[str, Any] = field(default_factory=dict)
    deadline_s: float = 600.0
    sample_every_s: float = 0.5

    def quotas(self) -> dict[str, tuple[float, float]]:
        quotas = {"StartWebRTCContact": (self.start_rate, self.start_burst)}
        if self.other_quotas is not None:
            quotas |= {
                "DescribeContact": self.other_quotas,
                "StartScreenSharing": self.other_quotas,
            }
        return quotas


QUICK = BacklogOptions(
    requests=24, restarts=((4.0, "TERM"), (6.0, "KILL"), (8.0, "TERM")), start_rate=4.0,
    start_burst=3.0, agent_delay="0.2:1", talk_time="20:30", other_quotas=(100.0, 100.0),
    # The queue drains in 25-45 s; the deadline only guards against a drain that never ends
    # (a loaded machine takes several times as long: tests/bench runs this beside others).
    deadline_s=300.0,
    worker_settings={"QUEUE__VISIBILITY_TIMEOUT_S": 4, "QUEUE__WAIT_TIME_S": 1,
                     "SHUTDOWN__GRACE_PERIOD_S": 5},
)  # fmt: skip


async def run_mode(mode: Mode, opts: BacklogOptions, ctx: RunContext, sqs_url: str) -> Drain:
    async def restart_on_schedule(d: Drain) -> None:
        """Start the workers, replace the oldest on schedule, until the queue is empty (or the
        deadline)."""
        await d.rig.pool.start(opts.workers)
        for at, which in opts.restarts:
            await anyio.sleep(max(0.0, at - d.now()))
            victim, _ = await d.rig.pool.replace(signal.Signals[f"SIG{which}"])
            mark = {"at_s": round(d.now(), 1), "signal": f"SIG{which}", "worker": victim.name}
            d.marks.append(mark)
        await d.until(opts.deadline_s)

    emulator_args = [
        "--abandon-rate", "0", "--max-concurrent-calls", "1000",
        "--agent-delay", opts.agent_delay, "--talk-time", opts.talk_time,
    ]  # fmt: skip
    settings = {"CONNECT__QUOTA_SHARE": round(1 / opts.workers, 4), **opts.worker_settings}
    return await drain(
        mode, ctx=ctx, run=mode.name, sqs_url=sqs_url, requests=opts.requests,
        quotas=opts.quotas(), emulator_args=emulator_args, settings=settings,
        drive=restart_on_schedule, stop_timeout_s=120.0, sample_every_s=opts.sample_every_s,
    )  # fmt: skip


def mode_figures(d: Drain, opts: BacklogOptions) -> dict[str, Any]:
    out = figures(d, (opts.start_rate, opts.start_burst))
    created = d.created
    p90 = max(1, math.ceil(0.9 * len(d.ids)))
    out["quota_efficiency_first_90pct"] = math.nan
    if len(created) >= p90:
        out["quota_efficiency_first_90pct"] = analysis.quota_efficiency(
            p90, created[p90 - 1] - created[0], opts.start_rate, opts.start_burst
        )
    logs = log_figures(d.rig.pool.workers)
    return {
        **out,
        "settings": dict(d.mode.settings),
        "max_receive_count": max([logs["max_receipts_logged"], *d.dead]),
        **logs,
        "restarts": d.marks,
        "graceful_stops": {
            w.name: {
                "sigterm_to_exit_s": None if w.stop_s is None else round(w.stop_s, 1),
                "exit_code": w.exit_code,
            }
            for w in d.rig.pool.workers
            if w.signalled == "SIGTERM"
        },
    }


async def measure(opts: BacklogOptions, ctx: RunContext) -> dict[str, Any]:
    say(f"backlog under restarts: {opts.requests} requests, {len(opts.restarts)} restarts")
    async with sqs_server_process(ctx.log("sqs")) as sqs:
        drains = await run_all(
            {m.name: partial(run_mode, m, opts, ctx, sqs.url) for m in MODES if ctx.wants(m.name)}
        )
    modes = {name: mode_figures(d, opts) for name, d in drains.items()}
    for name, m in modes.items():
        say(
            f"  {name:<9} {share(m['quota_efficiency'])} of the quota, "
            f"{m['dead_letters']} dead letters, held at most {m['max_unstarted_held_by_a_worker']}"
        )
    return {
        "requests": opts.requests,
        "workers": opts.workers,
        "quota": {"rate": opts.start_rate, "burst": opts.start_burst},
        "restart_schedule": [{"at_s": at, "signal": f"SIG{w}"} for at, w in opts.restarts],
        # The timelines (for the plot) stay out of the recorded results.
        **{name: {k: v for k, v in m.items() if k != "timeline"} for name, m in modes.items()},
        "timelines": {name: m["timeline"] for name, m in modes.items()},
    }


def log_figures(workers: Sequence[WorkerProcess]) -> dict[str, Any]:
    receipts: Counter[str] = Counter()
    startup: list[float] = []
    held: dict[str, int] = {}
    bounds: set[int] = set()
    given_up = 0
    for child in workers:
        records = child.records()
        held[child.name] = most_waiting_to_start(records)
        for r in records:
            if r.get("event") == "request.received" and r.get("message_id"):
                receipts[str(r["message_id"])] += 1
            elif r.get("event") == "worker.started":
                bounds.add(int(r["max_waiting_to_start"]))
            elif r.get("event") == "message.given_up":
                given_up += 1
            elif r.get("event") == "queue.redrive_policy" and "timestamp" in r:
                startup.append(
                    datetime.fromisoformat(str(r["timestamp"])).timestamp() - child.started_wall
                )
    spread = Counter(receipts.values())
    return {
        "admission_bound": max(bounds) if bounds else None,
        "max_unstarted_held_by_a_worker": max(held.values(), default=0),
        "unstarted_held_by_worker": held,
        "max_receipts_logged": max(receipts.values(), default=0),
        "receipts_logged_histogram": {str(k): spread[k] for k in sorted(spread)},
        "messages_given_up": given_up,
        # From process start to the first receive being allowed (the redrive policy read).
        "worker_startup_s": {
            "mean": sum(startup) / len(startup) if startup else math.nan,
            "max": max(startup, default=math.nan),
        },
    }


def plot(figures: Mapping[str, Any], path: Path) -> None:
    with figure(path, 2, figsize=(10, 7.5), sharex=True) as (_, (top, bottom)):
        colours = {"capacity": "tab:blue", "fleet": "tab:green", "deep": "tab:orange"}
        end, first = 0.0, math.inf
        for mode in MODES:
            if mode.name not in figures["timelines"]:
                continue
            timeline = figures["timelines"][mode.name]
            samples = timeline["samples"]
            t = [s[0] for s in samples]
            colour = colours[mode.name]
            top.plot(
                t,
                [s[2] + s[3] for s in samples],
                color=colour,
                label=f"{mode.label}: visible + in flight",
            )
            top.plot(t, [s[2] for s in samples], color=colour, linestyle="--", label="visible")
            starts = timeline["starts_s"]
            bottom.step(
                starts, range(1, len(starts) + 1), where="post", color=colour, label=mode.label
            )
            end = max(end, t[-1] if t else 0.0, starts[-1] if starts else 0.0)
            first = min(first, starts[0] if starts else math.inf)
        first = 0.0 if math.isinf(first) else first
        quota = figures["quota"]
        bottom.plot(
            [first, end],
            [quota["burst"], quota["burst"] + quota["rate"] * (end - first)],
            color="grey",
            linestyle=":",
            label=f"quota ({quota['rate']:g}/s, burst {quota['burst']:g})",
        )
        bottom.axhline(figures["requests"], color="grey", linewidth=0.5)
        bottom.set_ylim(0, figures["requests"] * 1.1)
        for restart in next(figures[m.name]["restarts"] for m in MODES if m.name in figures):
            kill = restart["signal"] == "SIGKILL"
            for axes in (top, bottom):
                axes.axvline(
                    restart["at_s"],
                    color="red" if kill else "black",
                    linestyle="-" if kill else ":",
                    linewidth=0.8,
                    alpha=0.6,
                )
        top.set_ylabel("request queue: messages")
        top.set_title(
            f"{figures['requests']} queued requests, {figures['workers']} workers; "
            "restarts: dotted = SIGTERM, red = SIGKILL"
        )
        top.legend(fontsize=8, loc="upper right")
        bottom.set_ylabel("contacts started (cumulative)")
        bottom.set_xlabel("seconds since the workers started")
        bottom.legend(fontsize=8, loc="lower right")


def _again(mode: Mapping[str, Any]) -> int:
    """Messages whose `request.received` was logged more than once."""
    return sum(n for k, n in mode["receipts_logged_histogram"].items() if int(k) > 1)


def _finals(mode: Mapping[str, Any]) -> str:
    return ", ".join(f"{n} `{t}`" for t, n in sorted(mode["finals"].items(), key=lambda x: -x[1]))


def markdown(figures: Mapping[str, Any]) -> str:
    ours, fleet, old = figures["capacity"], figures["fleet"], figures["deep"]
    quota = figures["quota"]
    terms = sum(1 for r in figures["restart_schedule"] if r["signal"] == "SIGTERM")
    kills = len(figures["restart_schedule"]) - terms
    at = ", ".join(
        f"{r['at_s']:g} s" + (" (KILL)" if r["signal"] == "SIGKILL" else "")
        for r in figures["restart_schedule"]
    )

    def row(label: str, key: str, fmt: Any = str) -> str:
        return f"| {label} | {fmt(ours[key])} | {fmt(fleet[key])} | {fmt(old[key])} |"

    startup_row = row(
        "worker start-up, process start to first receive (mean)",
        "worker_startup_s",
        lambda startup: f"{startup['mean']:.1f} s",
    )

    def verdict_of(mode: str, label: str) -> str:
        t = figures["targets"][mode]
        m = figures[mode]
        return (
            f"Targets, {label}: >= 90 % of the quota: {verdict(t['quota_efficiency'])} "
            f"({share(m['quota_efficiency'])}); 0 in the DLQ: {verdict(t['dead_letters'])} "
            f"({m['dead_letters']})."
        )

    first_90 = row(
        "start rate, share of the quota (first 90 % of starts)",
        "quota_efficiency_first_90pct",
        share,
    )
    verdicts = verdict_of("capacity", "static shares") + "\n" + verdict_of("fleet", "fleet mode")
    return f"""## Backlog under restarts

{figures["requests"]} call requests queued at once, three `orchestrator run` processes (each
`quota_share` 1/3), Connect's real StartWebRTCContact quota in the emulator
({quota["rate"]:g}/s, burst {quota["burst"]:g}), a request queue with a DLQ after
{MAX_RECEIVE_COUNT} receives, an SQS events queue. {len(figures["restart_schedule"])} restarts
during the drain, the same schedule for every mode ({terms} rolling SIGTERMs, {kills} SIGKILLs,
the oldest worker each time, replaced at once): {at}. The three modes ran at the same time, each
on its own emulator and queue (fleet mode with its own Redis). Everything else at its default
(visibility 60 s once a contact started, 15 s before; grace 30 s; long poll 20 s; request TTL
300 s). `python -m bench backlog`.

| | start capacity, static shares | start capacity, fleet mode | `max_in_flight` (old) |
|---|---|---|---|
{row("unstarted messages a worker may hold (bound)", "admission_bound")}
{row("most a worker held (from its logs)", "max_unstarted_held_by_a_worker")}
{row("start rate, share of the quota (all starts)", "quota_efficiency", share)}
{first_90}
{row("StartWebRTCContact 429s", "start_throttled")}
{row("in the DLQ", "dead_letters")}
{row("requests with no final event", "requests_without_final_event")}
{row("duplicate contacts", "duplicate_contacts")}
{row("max receive count", "max_receive_count")}
{row("drain time (queue empty)", "drain_s", drained)}
{startup_row}

Final events: {_finals(ours)} (static shares); {_finals(fleet)} (fleet mode); {_finals(old)}
(old). A `screen_sharing.skipped`
(`contact_ended`) is a contact started by a SIGKILLed worker whose call ended (talk time
30-120 s) before its message came back, 60 s later: the right outcome, not a loss.

{verdicts}

What limits static shares: each worker may use a fixed third of the quota (`quota_share`), so
while a stopped worker's replacement starts up (mean {ours["worker_startup_s"]["mean"]:.1f} s
here) the fleet can start at two thirds of the quota at most. Fleet mode removes that limit: the
survivors spend the whole shared budget. In every mode a SIGKILLed worker's unstarted messages
(at most its bound) wait for their unstarted visibility timeout (15 s) before another worker
takes them, and those whose contact had started for the full visibility timeout (60 s).

What the old behaviour shows: a SIGTERM hands unstarted messages back at once, and a SIGKILL
hides unstarted ones for 15 s only, in every mode (part of the same change, so this column is
kinder than the old code was): the comparison isolates how much a worker takes in. It receives
more messages again after the restarts ({_again(old)} of {figures["requests"]} received more
than once, against {_again(ours)}; max receive count {old["max_receive_count"]} against
{ours["max_receive_count"]}, the last allowed attempt being {MAX_RECEIVE_COUNT}) and starts
more slowly: from the first restarts on, the backlog sits in the workers' memory (after a
SIGKILL, in a dead worker's), not in the queue, so a replacement finds nothing to start while
its share of the quota goes unused; and messages received again and again run out of receives:
{old["dead_letters"]} reached the dead-letter queue without a final event
({old["requests_without_final_event"]} requesters never heard back), against
{ours["dead_letters"]} and {fleet["dead_letters"]} with admission by start capacity.

How measured: share of the quota = (starts - burst) / (rate x window), the window running from
the first to the last contact's CreatedAt in the emulator (1.0 = every token used as it
refills); "first 90 %" ends the window at the 90th-percentile start, leaving out the tail of
messages a SIGKILLed worker held until their visibility timeout ran out. Receive counts are
the `request.received` lines per SQS message id in the workers' logs (a lower bound: what a
stopping worker's last long poll returned goes back unlogged) and the DLQ messages'
ApproximateReceiveCount. "Most held" replays each worker's log (`request.received` until
`contact.started` or another end, up to its SIGTERM). The old behaviour (admission bounded by
`max_in_flight` only) is configured as `max_waiting_to_start = max_in_flight = 1000` and
`admission_window_s = 3600`: a bound of {old["admission_bound"]} per worker.

![backlog drain](plots/backlog-drain.png)
"""


SCENARIO = Scenario(
    "backlog", "backlog under restarts: admission by start capacity against deep admission",
    BacklogOptions(), QUICK, measure, markdown, seed=7, plot=plot, plot_name="backlog-drain",
    variants=tuple(m.name for m in MODES), unrecorded=("timelines",),
    targets={mode: {"quota_efficiency": Target(f"{mode}.quota_efficiency", ">=", 0.90),
                    "dead_letters": Target(f"{mode}.dead_letters", "==", 0)}
             for mode in ("capacity", "fleet")},
)  # fmt: skip
