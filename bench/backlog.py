"""Backlog under restarts: a queued backlog drained by three `orchestrator run` processes at
Connect's real StartWebRTCContact quota while they are restarted (rolling SIGTERMs and SIGKILLs,
each worker replaced at once), admission by start capacity against deep admission, side by side.

```
python -m bench.backlog            # 160 requests, 8 restarts, records bench/results.json
python -m bench.backlog --quick    # a small run, under bench/.runs/backlog-quick*, no record
```

Both modes run at the same time, each on its own emulator (its own account quota) and its own
request queue (with a dead-letter queue after 5 receives), on one SQS server, with the same
restart schedule. Figures come from the emulator's ground truth (contacts' CreatedAt, 429s), the
events queue (final events), the dead-letter queue and the workers' JSON logs.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from aiobotocore.session import AioSession
from anyio.abc import TaskGroup

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
from orchestrator.testing.worker_logs import log_records, most_waiting_to_start

from . import analysis, servers
from .common import REGION, isolate_environment, quota_args, request_body, request_id
from .context import RunContext, say
from .record import BENCH_DIR, plot_path, record

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

NAME = "backlog"
#: Connect's default StartWebRTCContact quota (per account and region).
START_RATE, START_BURST = 2.0, 5.0
MAX_RECEIVE_COUNT = 5
TARGETS = {"quota_efficiency": (">=", 0.90), "dead_letters": ("==", 0)}
#: Ends a lifecycle without a contact start, or hands its message back unstarted.


@dataclass(frozen=True)
class Mode:
    name: str
    label: str
    #: ORCHESTRATOR_* settings on top of the common ones.
    settings: Mapping[str, Any]
    #: Fleet mode: the workers share one budget through a Redis started for this mode.
    fleet: bool = False


MODES = (
    Mode("capacity", "admission by start capacity, static shares (quota_share 1/3)", {}),
    Mode("fleet", "admission by start capacity, fleet mode (Redis)", {}, fleet=True),
    # Before admission by start capacity only max_in_flight bounded what a worker received:
    # a window of an hour at the start rate makes max_waiting_to_start (1000) the bound.
    Mode(
        "deep",
        "max_in_flight-bound admission (the old behaviour)",
        {
            "QUEUE__MAX_WAITING_TO_START": 1000,
            "QUEUE__MAX_IN_FLIGHT": 1000,
            "QUEUE__ADMISSION_WINDOW_S": 3600,
        },
    ),
)


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


QUICK = BacklogOptions(
    requests=24,
    restarts=((4.0, "TERM"), (6.0, "KILL"), (8.0, "TERM")),
    start_rate=4.0,
    start_burst=3.0,
    agent_delay="0.2:1",
    talk_time="20:30",
    other_quotas=(100.0, 100.0),
    worker_settings={
        "QUEUE__VISIBILITY_TIMEOUT_S": 4,
        "QUEUE__WAIT_TIME_S": 1,
        "SHUTDOWN__GRACE_PERIOD_S": 5,
    },
    deadline_s=35.0,
)


@dataclass
class ModeRun:
    """One mode's run in progress: its queues, workers, samples and events."""

    mode: Mode
    opts: BacklogOptions
    sqs: SQSClient
    sqs_url: str
    connect_url: str
    logs: Path
    queue: str = ""
    dlq: str = ""
    events: str = ""
    follower: EventFollower = field(default_factory=EventFollower)
    workers: list[LoggedChild] = field(default_factory=list)
    alive: list[LoggedChild] = field(default_factory=list)
    started_at: float = 0.0
    started_wall: float = 0.0
    #: worker -> monotonic time of its SIGTERM
    terminated_at: dict[str, float] = field(default_factory=dict)
    #: (seconds since start, visible, in flight, dead-lettered)
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    #: worker -> wall time it was started
    launched: dict[str, float] = field(default_factory=dict)
    #: (seconds since start, signal, worker)
    restarts: list[tuple[float, str, str]] = field(default_factory=list)
    #: worker -> seconds from SIGTERM to exit (None: did not exit), and exit code
    stops: dict[str, tuple[float | None, int | None]] = field(default_factory=dict)
    drained_s: float | None = None
    redis_url: str | None = None

    def env(self) -> dict[str, str]:
        settings: dict[str, Any] = {
            "AWS__REGION": REGION,
            "AWS__ENDPOINT_URL": self.sqs_url,
            "QUEUE__URL": self.queue,
            "CONNECT__ENDPOINT_URL": self.connect_url,
            "CONNECT__QUOTA_SHARE": round(1 / self.opts.workers, 4),
            "CONNECT__START_WEBRTC_CONTACT_RATE": self.opts.start_rate,
            "CONNECT__START_WEBRTC_CONTACT_BURST": self.opts.start_burst,
            "EVENTS__SQS_QUEUE_URL": self.events,
            "OBSERVABILITY__ENABLED": "false",
            "LOGGING__LEVEL": "INFO",
            **self._other_quotas(),
            **self.opts.worker_settings,
            **self.mode.settings,
        }
        if self.redis_url is not None:
            settings["FLEET__REDIS_URL"] = self.redis_url
        env = servers.child_env()
        env.update({f"ORCHESTRATOR_{k}": str(v) for k, v in settings.items()})
        return env

    def _other_quotas(self) -> dict[str, float]:
        if self.opts.other_quotas is None:
            return {}
        rate, burst = self.opts.other_quotas
        return {
            f"CONNECT__{op}_{kind}": value
            for op in ("DESCRIBE_CONTACT", "START_SCREEN_SHARING")
            for kind, value in (("RATE", rate), ("BURST", burst))
        }

    def now(self) -> float:
        return time.monotonic() - self.started_at

    async def set_up(self) -> list[str]:
        self.queue, self.dlq = await create_queue_with_dlq(
            self.sqs, max_receive_count=MAX_RECEIVE_COUNT, prefix=f"backlog-{self.mode.name}"
        )
        self.events = await create_queue(self.sqs, f"backlog-{self.mode.name}-ev")
        ids = [request_id(self.mode.name, i) for i in range(self.opts.requests)]
        await send_all(
            self.sqs, self.queue, [request_body(self.mode.name, i) for i in range(len(ids))]
        )
        return ids

    async def start_worker(self) -> LoggedChild:
        name = f"{self.mode.name}-w{len(self.workers)}"
        argv = [sys.executable, "-m", "orchestrator", "run"]
        self.launched[name] = time.time()
        child = await LoggedChild.start(name, argv, self.env(), self.logs / f"{name}.log")
        self.workers.append(child)
        self.alive.append(child)
        return child

    async def restart(self, which: str, tg: TaskGroup) -> None:
        victim = self.alive.pop(0)
        self.restarts.append((self.now(), which, victim.name))
        if which == "TERM":
            self.terminate(victim, tg)
        else:
            victim.signal(signal.SIGKILL)
        await self.start_worker()

    def terminate(self, child: LoggedChild, tg: TaskGroup) -> None:
        """SIGTERM `child` and time its exit."""
        child.signal(signal.SIGTERM)
        self.terminated_at[child.name] = time.monotonic()
        self.stops[child.name] = (None, None)
        tg.start_soon(self._timed_exit, child)

    async def _timed_exit(self, child: LoggedChild) -> None:
        try:
            code = await child.wait(120)
        except TimeoutError:
            return
        took = time.monotonic() - self.terminated_at[child.name]
        self.stops[child.name] = (round(took, 1), code)

    async def sample(self, done: anyio.Event) -> None:
        empty_twice = 0
        while not done.is_set():
            visible, hidden = await queue_counts(self.sqs, self.queue)
            dead = sum(await queue_counts(self.sqs, self.dlq))
            self.samples.append((self.now(), visible, hidden, dead))
            empty_twice = empty_twice + 1 if (visible, hidden) == (0, 0) else 0
            if empty_twice >= 2 and self.drained_s is None:
                self.drained_s = self.samples[-2][0]
            elif empty_twice == 0:
                self.drained_s = None
            with anyio.move_on_after(self.opts.sample_every_s):
                await done.wait()

    async def drive(self, tg: TaskGroup) -> None:
        """Start the workers, restart them on schedule, until the queue is empty (or the
        deadline); then SIGTERM the survivors and wait for every graceful stop."""
        self.started_at, self.started_wall = time.monotonic(), time.time()
        for _ in range(self.opts.workers):
            await self.start_worker()
        for at, which in self.opts.restarts:
            await anyio.sleep(max(0.0, at - self.now()))
            await self.restart(which, tg)
        while self.drained_s is None and self.now() < self.opts.deadline_s:
            await self.follower.next_arrival(within_s=0.5)
        for child in self.alive:
            self.terminate(child, tg)
        self.alive = []

    async def dead_letter_receive_counts(self) -> list[int]:
        counts: list[int] = []
        while True:
            got = await self.sqs.receive_message(
                QueueUrl=self.dlq,
                MaxNumberOfMessages=10,
                AttributeNames=["ApproximateReceiveCount"],
            )
            messages = got.get("Messages", [])
            if not messages:
                return counts
            for message in messages:
                counts.append(int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)))
            await self.sqs.delete_message_batch(
                QueueUrl=self.dlq,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )


# -- the workers' logs -----------------------------------------------------------------------------


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def log_figures(workers: Sequence[LoggedChild], launched: Mapping[str, float]) -> dict[str, Any]:
    receipts: Counter[str] = Counter()
    startup: list[float] = []
    held: dict[str, int] = {}
    bounds: set[int] = set()
    given_up = 0
    for child in workers:
        records = log_records(child.log_path)
        held[child.name] = most_waiting_to_start(records)
        for r in records:
            if r.get("event") == "request.received" and r.get("message_id"):
                receipts[str(r["message_id"])] += 1
            elif r.get("event") == "worker.started":
                bounds.add(int(r["max_waiting_to_start"]))
            elif r.get("event") == "message.given_up":
                given_up += 1
            elif r.get("event") == "queue.redrive_policy" and "timestamp" in r:
                startup.append(_epoch(str(r["timestamp"])) - launched[child.name])
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


# -- figures ---------------------------------------------------------------------------------------


def mode_figures(
    run: ModeRun, ids: list[str], contacts: list[dict[str, Any]], stats: Mapping[str, Any],
    dead_counts: list[int],
) -> dict[str, Any]:  # fmt: skip
    opts = run.opts
    matched, strays = analysis.match_requests(contacts, ids)
    created = sorted(float(c["CreatedAt"]) for c in matched.values())
    window = analysis.start_window(matched.values())
    efficiency = analysis.quota_efficiency(
        len(created), window["spread_s"], opts.start_rate, opts.start_burst
    )
    p90 = max(1, math.ceil(0.9 * len(ids)))
    efficiency_p90 = math.nan
    if len(created) >= p90:
        spread = created[p90 - 1] - created[0]
        efficiency_p90 = analysis.quota_efficiency(p90, spread, opts.start_rate, opts.start_burst)
    finals: dict[str, set[str]] = {}
    for event in run.follower.events:
        if event.get("final"):
            finals.setdefault(event["request_id"], set()).add(event["type"])
    per_token = Counter(c.get("ClientToken") for c in contacts)
    start_ops = analysis.operation_stats(stats)["StartWebRTCContact"]
    logs = log_figures(run.workers, run.launched)
    return {
        "label": run.mode.label,
        "settings": dict(run.mode.settings),
        "requests": len(ids),
        "contacts": len(contacts),
        "requests_with_a_contact": len(matched),
        "duplicate_contacts": sum(n - 1 for n in per_token.values()) + strays,
        "quota_efficiency": efficiency,
        "quota_efficiency_first_90pct": efficiency_p90,
        "achieved_start_rate": (len(created) - 1) / window["spread_s"]
        if window["spread_s"] > 0
        else math.nan,
        "start_window_s": window["spread_s"],
        "dead_letters": len(dead_counts),
        "dead_letter_receive_counts": sorted(dead_counts),
        "requests_without_final_event": sum(1 for r in ids if r not in finals),
        "requests_with_two_final_types": sum(1 for r in ids if len(finals.get(r, ())) > 1),
        "finals": dict(Counter(t for types in finals.values() for t in types)),
        "start_throttled": start_ops["throttled"],
        "start_calls": start_ops["calls"],
        "max_receive_count": max([logs["max_receipts_logged"], *dead_counts]),
        **logs,
        "drain_s": run.drained_s,
        "restarts": [
            {"at_s": round(at, 1), "signal": f"SIG{which}", "worker": name}
            for at, which, name in run.restarts
        ],
        "graceful_stops": {
            name: {"sigterm_to_exit_s": took, "exit_code": code}
            for name, (took, code) in run.stops.items()
        },
        "timeline": {
            "samples": [[round(t, 2), v, h, d] for t, v, h, d in run.samples],
            "starts_s": [round(t - run.started_wall, 2) for t in created],
        },
    }


# -- the run ---------------------------------------------------------------------------------------


async def run_mode(
    mode: Mode, opts: BacklogOptions, ctx: RunContext, session: AioSession, sqs_url: str
) -> dict[str, Any]:
    emulator_args = [
        "--seed", str(ctx.seed), "--abandon-rate", "0", "--max-concurrent-calls", "1000",
        "--agent-delay", opts.agent_delay, "--talk-time", opts.talk_time,
    ]  # fmt: skip
    quotas = {"StartWebRTCContact": (opts.start_rate, opts.start_burst)}
    if opts.other_quotas is not None:
        quotas |= {"DescribeContact": opts.other_quotas, "StartScreenSharing": opts.other_quotas}
    emulator_args += quota_args(quotas)
    async with (
        session.create_client("sqs", region_name=REGION, endpoint_url=sqs_url) as sqs,
        servers.emulator(emulator_args, ctx.log(f"{mode.name}-emulator")) as emulator,
    ):
        run = ModeRun(mode, opts, sqs, sqs_url, emulator.url, ctx.logs)
        redis: RedisServer | None = None
        if mode.fleet:
            workdir = ctx.logs / f"{mode.name}-redis"
            workdir.mkdir(parents=True, exist_ok=True)
            redis = RedisServer(workdir)
            redis.start()
            run.redis_url = redis.url
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
            if redis is not None:
                redis.kill()
        await run.follower.sweep(sqs, run.events)
        control = EmulatorControl(emulator.url, timeout_s=120)
        contacts = await control.contacts()
        stats = await control.stats()
        dead_counts = await run.dead_letter_receive_counts()
    return mode_figures(run, ids, contacts, stats, dead_counts)


async def measure(opts: BacklogOptions, ctx: RunContext) -> dict[str, Any]:
    session = AioSession()
    results: dict[str, dict[str, Any]] = {}
    async with servers.sqs_server(ctx.log("sqs")) as sqs:

        async def one(mode: Mode) -> None:
            results[mode.name] = await run_mode(mode, opts, ctx, session, sqs.url)

        async with anyio.create_task_group() as tg:
            for mode in MODES:
                tg.start_soon(one, mode)
    figures: dict[str, Any] = {
        "requests": opts.requests,
        "workers": opts.workers,
        "quota": {"rate": opts.start_rate, "burst": opts.start_burst},
        "restart_schedule": [{"at_s": at, "signal": f"SIG{w}"} for at, w in opts.restarts],
        **{mode.name: results[mode.name] for mode in MODES},
    }
    figures["targets"] = {
        mode: {
            name: {
                "op": op,
                "threshold": threshold,
                "value": results[mode][name],
                "pass": _passes(op, float(results[mode][name]), threshold),
            }
            for name, (op, threshold) in TARGETS.items()
        }
        for mode in ("capacity", "fleet")
    }
    return figures


def _passes(op: str, value: float, threshold: float) -> bool:
    if not math.isfinite(value):
        return False
    return value >= threshold if op == ">=" else value == threshold


# -- the plot and the section ----------------------------------------------------------------------


def plot(figures: Mapping[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.5), sharex=True)
    colours = {"capacity": "tab:blue", "fleet": "tab:green", "deep": "tab:orange"}
    end, first = 0.0, math.inf
    for mode in MODES:
        data = figures[mode.name]
        samples = data["timeline"]["samples"]
        t = [s[0] for s in samples]
        colour = colours[mode.name]
        top.plot(
            t,
            [s[1] + s[2] for s in samples],
            color=colour,
            label=f"{mode.label}: visible + in flight",
        )
        top.plot(t, [s[1] for s in samples], color=colour, linestyle="--", label="visible")
        starts = data["timeline"]["starts_s"]
        bottom.step(starts, range(1, len(starts) + 1), where="post", color=colour, label=mode.label)
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
    for restart in figures["capacity"]["restarts"]:
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pct(value: Any) -> str:
    return (
        "n/a" if not isinstance(value, int | float) or not math.isfinite(value) else f"{value:.0%}"
    )


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

    def secs(value: Any) -> str:
        return "did not drain" if value is None else f"{value:.0f} s"

    startup_row = (
        "| worker start-up, process start to first receive (mean) | "
        + " | ".join(f"{m['worker_startup_s']['mean']:.1f} s" for m in (ours, fleet, old))
        + " |"
    )

    def verdict_of(mode: str, label: str) -> str:
        t = figures["targets"][mode]
        m = figures[mode]
        return (
            f"Targets, {label}: >= 90 % of the quota: "
            f"**{'met' if t['quota_efficiency']['pass'] else 'missed'}** "
            f"({_pct(m['quota_efficiency'])}); 0 in the DLQ: "
            f"**{'met' if t['dead_letters']['pass'] else 'missed'}** ({m['dead_letters']})."
        )

    verdict = verdict_of("capacity", "static shares") + "\n" + verdict_of("fleet", "fleet mode")
    return f"""## Backlog under restarts

{figures["requests"]} call requests queued at once, three `orchestrator run` processes (each
`quota_share` 1/3), Connect's real StartWebRTCContact quota in the emulator
({quota["rate"]:g}/s, burst {quota["burst"]:g}), a request queue with a DLQ after
{MAX_RECEIVE_COUNT} receives, an SQS events queue. {len(figures["restart_schedule"])} restarts
during the drain, the same schedule for every mode ({terms} rolling SIGTERMs, {kills} SIGKILLs,
the oldest worker each time, replaced at once): {at}. The three modes ran at the same time, each
on its own emulator and queue (fleet mode with its own Redis). Everything else at its default
(visibility 60 s once a contact started, 15 s before; grace 30 s; long poll 20 s; request TTL
300 s). `python -m bench.backlog`.

| | start capacity, static shares | start capacity, fleet mode | `max_in_flight` (old) |
|---|---|---|---|
{row("unstarted messages a worker may hold (bound)", "admission_bound")}
{row("most a worker held (from its logs)", "max_unstarted_held_by_a_worker")}
{row("start rate, share of the quota (all starts)", "quota_efficiency", _pct)}
{row("start rate, share of the quota (first 90 % of starts)", "quota_efficiency_first_90pct", _pct)}
{row("StartWebRTCContact 429s", "start_throttled")}
{row("in the DLQ", "dead_letters")}
{row("requests with no final event", "requests_without_final_event")}
{row("duplicate contacts", "duplicate_contacts")}
{row("max receive count", "max_receive_count")}
{row("drain time (queue empty)", "drain_s", secs)}
{startup_row}

Final events: {_finals(ours)} (static shares); {_finals(fleet)} (fleet mode); {_finals(old)}
(old). A `screen_sharing.skipped`
(`contact_ended`) is a contact started by a SIGKILLed worker whose call ended (talk time
30-120 s) before its message came back, 60 s later: the right outcome, not a loss.

{verdict}

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


def without_timelines(figures: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: {k: v for k, v in value.items() if k != "timeline"}
        if key in {m.name for m in MODES}
        else value
        for key, value in figures.items()
    }


def summary(figures: Mapping[str, Any]) -> dict[str, Any]:
    keys = [
        "admission_bound", "max_unstarted_held_by_a_worker", "quota_efficiency",
        "quota_efficiency_first_90pct", "start_throttled", "dead_letters",
        "requests_without_final_event", "duplicate_contacts", "max_receive_count", "drain_s",
        "finals",
    ]  # fmt: skip
    return {mode.name: {k: figures[mode.name][k] for k in keys} for mode in MODES}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.backlog", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small run; records nothing")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    isolate_environment()
    opts = QUICK if args.quick else BacklogOptions()
    stem = "backlog-quick" if args.quick else "backlog"
    runs = BENCH_DIR / ".runs"
    ctx = RunContext(logs=runs / f"{stem}-logs", seed=args.seed)
    say(f"backlog under restarts: {opts.requests} requests, {len(opts.restarts)} restarts")
    figures = anyio.run(measure, opts, ctx)
    if args.quick:
        runs.mkdir(parents=True, exist_ok=True)
        (runs / f"{stem}.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        plot(figures, runs / f"{stem}-drain.png")
    else:
        # The timelines (for the plot) stay out of the committed results.
        runs.mkdir(parents=True, exist_ok=True)
        (runs / f"{stem}.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        plot(figures, plot_path("backlog-drain"))
        record(NAME, without_timelines(figures), markdown(figures))
    print(json.dumps(summary(figures)), flush=True)


if __name__ == "__main__":
    main()
