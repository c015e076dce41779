"""Contact events on vs off: how soon an agent connection is noticed on a tight DescribeContact
budget, and what it costs in DescribeContact calls.

`python -m bench.events [--quick]`. Two fresh emulators with the same seed and the same
contact-center model (one FIFO queue, `agents` agents, uniform(`handle_time_s`) per call, a
patience nobody runs out of), DescribeContact held to 2/s (burst 3) in each emulator and in each
worker's `[connect]` (what ORCHESTRATOR_CONNECT__DESCRIBE_CONTACT_RATE=2 and _BURST=3 set). The
StartWebRTCContact and StartScreenSharing quotas are raised so that every contact starts at once
and screen sharing starts as soon as it is asked: only detection is measured. Side by side, in
one run:

* events on: the emulator publishes contact events to a queue on a local SQS server (moto, its own
  process), best effort: 10 % never delivered, 10 % delivered twice, each copy 0.05-0.6 s late;
  the worker reads them (`[contact_events] queue_url`), and polls on the safety-net schedule;
* events off: the worker polls with the `[watch]` defaults (queue-aware).

Both workers are the real one (`open_worker`), fed through an in-memory request queue. Detection
delay = ScreenSharingStartedAt - ConnectedToAgentAt, per contact, from the emulator; with events
on it is split by whether the contact's CONNECTED_TO_AGENT event arrived or was dropped
(`ContactEventsDropped`).

The helpers that run a worker against an emulator are shared with `bench.polling`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import matplotlib
from aiobotocore.session import AioSession
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from orchestrator.connect.gateway import connect_client_config
from orchestrator.connect.operations import Operation
from orchestrator.daemon.logs import configure_logging
from orchestrator.daemon.settings import Settings
from orchestrator.daemon.sqs import aws_client_config
from orchestrator.metrics import Metrics
from orchestrator.testing.emulator import EmulatorControl
from orchestrator.testing.stats import distribution

from . import analysis, servers
from .common import (
    REGION,
    isolate_environment,
    quota_args,
    request_body,
    request_id,
    request_params,
    span,
)
from .context import RunContext, say
from .daemon import FinalCounter, aio_session, memory_worker, run_until, worker_logs
from .record import BENCH_DIR, plot_path, record

NAME = "events"
RAISED = 1000.0
#: Request index of the first filler contact (far from the worker's 0..contacts).
FILLER_INDEX = 50_000
#: Where quick runs write (never the committed results).
RUNS_DIR = BENCH_DIR / ".runs"
CONNECTED = "CONNECTED_TO_AGENT"

TARGET_ARRIVED_P95_S = 1.5
TARGET_CALLS_PER_CONTACT = 2.0


# -- shared with bench.polling ----------------------------------------------------------------


@dataclass(frozen=True)
class Center:
    """The emulated contact center and the DescribeContact quota (emulator and worker alike)."""

    contacts: int
    agents: int
    handle_time_s: tuple[float, float]
    describe_rate: float
    describe_burst: float
    patience_s: float = 3600.0
    #: Contacts started straight away by another client (not the worker) so that they take
    #: the agents first: the worker's contacts then wait and connect one by one as agents free
    #: up, instead of a first wave of `agents` connections at once.
    fillers: int = 0

    @property
    def waiting_at_start(self) -> int:
        """The worker's contacts that find no free agent."""
        return min(self.contacts, max(0, self.contacts + self.fillers - self.agents))

    def drain_estimate_s(self) -> float:
        """When the last contact gets an agent: the first `agents` at once, then the rest as
        agents free up (mean handle time each), from the shortest handle time on."""
        waiting = max(0, self.contacts + self.fillers - self.agents)
        if waiting == 0:
            return 0.0
        mean_handle = sum(self.handle_time_s) / 2
        return self.handle_time_s[0] + waiting * mean_handle / self.agents

    def deadline_s(self) -> float:
        return self.drain_estimate_s() + self.handle_time_s[1] + 60.0

    def emulator_args(self, seed: int) -> list[str]:
        return [
            "--seed",
            str(seed),
            "--max-concurrent-calls",
            "0",
            "--agents",
            str(self.agents),
            "--handle-time",
            span(*self.handle_time_s),
            "--patience",
            span(self.patience_s, self.patience_s),
            *quota_args(
                {
                    "StartWebRTCContact": (RAISED, RAISED),
                    "DescribeContact": (self.describe_rate, self.describe_burst),
                    "StartScreenSharing": (RAISED, RAISED),
                }
            ),
        ]

    def connect_settings(self, endpoint_url: str) -> dict[str, Any]:
        return {
            "endpoint_url": endpoint_url,
            "start_webrtc_contact_rate": RAISED,
            "start_webrtc_contact_burst": RAISED,
            "describe_contact_rate": self.describe_rate,
            "describe_contact_burst": self.describe_burst,
            "start_screen_sharing_rate": RAISED,
            "start_screen_sharing_burst": RAISED,
        }


@dataclass
class WorkerRun:
    """What one worker run left behind: the emulator's ground truth and the worker's counts."""

    contacts: list[dict[str, Any]]
    stats: dict[str, Any]
    completed: bool
    wall_s: float
    finals: dict[str, int]
    detected_via: dict[str, int]
    contact_events: dict[str, int]
    #: Contacts woken because a younger one of their queue got an agent, by what their poll
    #: found (served, waiting).
    passed_wakes: dict[str, int]


async def run_worker(
    center: Center,
    emulator_url: str,
    *,
    run: str,
    seed: int,
    watch: Mapping[str, Any] | None = None,
    contact_events: Mapping[str, Any] | None = None,
) -> WorkerRun:
    """Start `center.contacts` requests at once through the real worker, run it until every
    lifecycle ended (or the deadline), then read the emulator's ground truth."""
    n = center.contacts
    settings = Settings(
        aws={"region": REGION},
        # A MemoryQueue feeds the worker: the URL (a reserved .invalid name) is never called.
        queue={"url": f"http://memory.invalid/{run}", "wait_time_s": 1, "max_in_flight": 1000},
        connect=center.connect_settings(emulator_url),
        watch=dict(watch or {}),
        contact_events=dict(contact_events or {}),
        observability={"enabled": False},
    )
    counter = FinalCounter(expected=n)
    metrics = Metrics()
    if center.fillers:
        await start_fillers(emulator_url, center.fillers)
    async with memory_worker(
        settings, session=aio_session(), metrics=metrics, extra_sinks=[counter], seed=seed
    ) as (worker, queue):
        started = time.monotonic()
        for i in range(n):
            queue.send(request_body(run, i))
        completed = await run_until(worker, counter, center.deadline_s())
        wall = (counter.last_final or time.monotonic()) - started
    truth = EmulatorControl(emulator_url, timeout_s=120)
    # The worker's contacts, by the ClientToken it derives from each request id (not fillers).
    ours, _ = analysis.match_requests(
        await truth.contacts(), [request_id(run, i) for i in range(n)]
    )
    contacts = list(ours.values())
    stats = await truth.stats()
    via = "orchestrator_agent_detection_delay_seconds_count"
    outcomes = ("matched", "early", "unmatched", "duplicate", "malformed")
    return WorkerRun(
        contacts=contacts,
        stats=stats,
        completed=completed,
        wall_s=wall,
        finals=dict(counter.finals),
        detected_via={v: int(metrics.value(via, {"via": v})) for v in ("event", "poll")},
        contact_events={
            o: int(metrics.value("orchestrator_contact_events_total", {"outcome": o}))
            for o in outcomes
        },
        passed_wakes={
            r: int(metrics.value("orchestrator_passed_wakes_total", {"result": r}))
            for r in ("served", "waiting")
        },
    )


async def start_fillers(emulator_url: str, count: int) -> None:
    """Start `count` contacts without the worker (never watched) and wait
    until the emulator has given each an agent."""
    async with aio_session().create_client(
        "connect", region_name=REGION, endpoint_url=emulator_url, config=connect_client_config()
    ) as client:
        for i in range(count):
            await client.start_web_rtc_contact(**request_params(FILLER_INDEX + i))
    truth = EmulatorControl(emulator_url, timeout_s=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        connected = [c for c in await truth.contacts() if c.get("ConnectedToAgentAt")]
        if len(connected) >= count:
            return
        await anyio.sleep(0.1)
    raise RuntimeError(f"the emulator did not connect the {count} filler contacts within 30 s")


def delay_s(contact: Mapping[str, Any]) -> float | None:
    """ScreenSharingStartedAt - ConnectedToAgentAt, or None if either is missing."""
    shared, connected = contact.get("ScreenSharingStartedAt"), contact.get("ConnectedToAgentAt")
    if shared is None or connected is None:
        return None
    return float(shared) - float(connected)


def delays(contacts: Sequence[Mapping[str, Any]]) -> list[float]:
    return [d for d in map(delay_s, contacts) if d is not None]


def describe_figures(run: WorkerRun) -> dict[str, Any]:
    """Detection, DescribeContact calls per contact and 429s of one run."""
    ops = analysis.operation_stats(run.stats)[Operation.DESCRIBE_CONTACT]
    found = analysis.detection(run.contacts)
    return {
        "contacts": found["contacts"],
        "connected": found["connected"],
        "undetected": found["undetected"],
        "never_connected": found["never_connected"],
        "detection_delay_s": found["detection_delay_s"],
        "time_to_agent_s": found["time_to_agent_s"],
        "describe_calls_per_contact": found["describe_calls_per_contact"],
        "describe_calls": ops["calls"],
        "describe_throttled": ops["throttled"],
        "completed": run.completed,
        "wall_s": run.wall_s,
        "finals": run.finals,
        "detected_via": run.detected_via,
        "passed_wakes": run.passed_wakes,
    }


def finite(value: float) -> float | None:
    """JSON has no NaN: None instead."""
    return value if math.isfinite(value) else None


def write_quick(name: str, figures: Mapping[str, Any]) -> Path:
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    path = RUNS_DIR / f"{name}-quick.json"
    path.write_text(json.dumps(figures, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def output_path(name: str, quick: bool) -> Path:
    """A plot's file: bench/plots/ for a full run, bench/.runs/ for a quick one."""
    if quick:
        RUNS_DIR.mkdir(parents=True, exist_ok=True)
        return RUNS_DIR / f"{name}.png"
    return plot_path(name)


def restore_logging() -> None:
    """The workers' log file is closed once they stop: later records (matplotlib's) go to
    stderr."""
    configure_logging(level="WARNING", json_output=False, stream=sys.stderr)


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


# -- the scenario -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EventsOptions:
    center: Center = Center(
        contacts=70,
        agents=30,
        fillers=30,
        handle_time_s=(60.0, 120.0),
        describe_rate=2.0,
        describe_burst=3.0,
    )
    drop_rate: float = 0.10
    duplicate_rate: float = 0.10
    delay_s: tuple[float, float] = (0.05, 0.6)


QUICK = EventsOptions(
    center=Center(
        contacts=10,
        agents=3,
        fillers=3,
        handle_time_s=(5.0, 7.0),
        describe_rate=2.0,
        describe_burst=3.0,
    )
)


def split_by_event(contacts: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Connected contacts whose CONNECTED_TO_AGENT event was delivered, and those whose was
    dropped by the emulator."""
    connected = [c for c in contacts if c.get("ConnectedToAgentAt") is not None]
    lost = [c for c in connected if CONNECTED in (c.get("ContactEventsDropped") or [])]
    arrived = [c for c in connected if CONNECTED not in (c.get("ContactEventsDropped") or [])]
    return {"arrived": arrived, "lost": lost}


def calls(contacts: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    return distribution([float(c.get("DescribeContactCalls", 0)) for c in contacts])


def with_events_figures(on: WorkerRun) -> dict[str, Any]:
    """A run with events on: overall, and split by whether the CONNECTED_TO_AGENT event
    arrived."""
    groups = split_by_event(on.contacts)
    return {
        **describe_figures(on),
        "arrived": {
            "contacts": len(groups["arrived"]),
            "detection_delay_s": distribution(delays(groups["arrived"])),
            "describe_calls_per_contact": calls(groups["arrived"]),
        },
        "lost": {
            "contacts": len(groups["lost"]),
            "detection_delay_s": distribution(delays(groups["lost"])),
            "describe_calls_per_contact": calls(groups["lost"]),
        },
        "contact_events": {
            "published": int(on.stats.get("contact_events_published", 0)),
            "dropped": int(on.stats.get("contact_events_dropped", 0)),
            "duplicated": int(on.stats.get("contact_events_duplicated", 0)),
            "worker": on.contact_events,
        },
    }


def events_figures(
    on: WorkerRun, off: WorkerRun, on_random: WorkerRun, opts: EventsOptions
) -> dict[str, Any]:
    on_figures = with_events_figures(on)
    groups = split_by_event(on.contacts)
    arrived_p95 = on_figures["arrived"]["detection_delay_s"]["p95"]
    calls_mean = on_figures["describe_calls_per_contact"]["mean"]
    arrived_calls = on_figures["arrived"]["describe_calls_per_contact"]["mean"]
    c = opts.center
    return {
        "options": {
            **asdict(c),
            "waiting_at_start": c.waiting_at_start,
            "drain_estimate_s": c.drain_estimate_s(),
            "events_drop_rate": opts.drop_rate,
            "events_duplicate_rate": opts.duplicate_rate,
            "events_delay_s": list(opts.delay_s),
            "other_quotas": [RAISED, RAISED],
        },
        "events_on": on_figures,
        "events_off": describe_figures(off),
        "events_on_random_order": with_events_figures(on_random),
        "targets": {
            "arrived_detection_p95_s": {
                "value": finite(arrived_p95),
                "target": TARGET_ARRIVED_P95_S,
                "pass": bool(math.isfinite(arrived_p95) and arrived_p95 <= TARGET_ARRIVED_P95_S),
            },
            "describe_calls_per_contact_mean": {
                "value": finite(calls_mean),
                "target": TARGET_CALLS_PER_CONTACT,
                "pass": bool(math.isfinite(calls_mean) and calls_mean <= TARGET_CALLS_PER_CONTACT),
            },
            "arrived_describe_calls_per_contact_mean": {
                "value": finite(arrived_calls),
                "target": TARGET_CALLS_PER_CONTACT,
                "pass": bool(
                    math.isfinite(arrived_calls) and arrived_calls <= TARGET_CALLS_PER_CONTACT
                ),
            },
        },
        "plot_values": {
            "events_on_arrived": delays(groups["arrived"]),
            "events_on_lost": delays(groups["lost"]),
            "events_off": delays(off.contacts),
        },
    }


def plot(figures: Mapping[str, Any], path: Path) -> None:
    matplotlib.use("Agg")
    values = figures["plot_values"]
    series = [
        ("events on, CONNECTED_TO_AGENT arrived", values["events_on_arrived"], "tab:blue"),
        ("events on, CONNECTED_TO_AGENT lost", values["events_on_lost"], "tab:orange"),
        ("events off ([watch] defaults)", values["events_off"], "tab:gray"),
    ]
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for label, data, colour in series:
        if not data:
            continue
        ordered = sorted(data)
        ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
        ax.step(ordered, ys, where="post", label=f"{label} (n={len(ordered)})", color=colour)
    ax.axvline(TARGET_ARRIVED_P95_S, linestyle="--", color="tab:red", linewidth=1)
    ax.axhline(0.95, linestyle=":", color="tab:red", linewidth=1)
    ax.text(TARGET_ARRIVED_P95_S, 0.02, " target p95 1.5 s", color="tab:red", fontsize=8)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("detection delay, agent connected -> screen sharing started (s, log)")
    ax.set_ylabel("share of contacts (cumulative)")
    c = figures["options"]
    ax.set_title(
        f"Contact events on vs off: {c['contacts']} contacts, {c['agents']} agents, "
        f"DescribeContact {c['describe_rate']:g}/s"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(figures: Mapping[str, Any], wall_s: float) -> str:
    o, on, off = figures["options"], figures["events_on"], figures["events_off"]
    rnd = figures["events_on_random_order"]
    t = figures["targets"]
    arrived, lost = on["arrived"], on["lost"]
    p95_target, calls_target = t["arrived_detection_p95_s"], t["describe_calls_per_contact_mean"]
    arrived_calls_target = t["arrived_describe_calls_per_contact_mean"]
    verdict = {True: "met", False: "missed"}
    wait = on["time_to_agent_s"]

    def row(label: str, d: Mapping[str, Any], n: int, calls_d: Mapping[str, Any]) -> str:
        return (
            f"| {label} | {n} | {fmt(d['p50'])} | {fmt(d['p95'])} | {fmt(d['p99'])} | "
            f"{fmt(calls_d['mean'], 1)} | {fmt(calls_d['p95'], 0)} |"
        )

    setup = " ".join(
        [
            f"`python -m bench.events` (wall time {wall_s:.0f} s).",
            f"Two emulators with the same seed, one FIFO queue served by {o['agents']} agents",
            f"(handle time {span(*o['handle_time_s'])} s): {o['fillers']} contacts started",
            "first by another client take every agent, then the worker starts",
            f"{o['contacts']} contacts at once, so {o['waiting_at_start']} wait and agents",
            f"connect them one by one over about {o['drain_estimate_s']:.0f} s",
            f"(time to agent p50 {fmt(wait['p50'], 0)} s, max {fmt(wait['max'], 0)} s).",
            f"DescribeContact {o['describe_rate']:g}/s burst {o['describe_burst']:g} in the",
            "emulators and in the workers' `[connect]`; StartWebRTCContact and",
            "StartScreenSharing raised so that only detection is measured.",
            "Events on: the emulator publishes contact events to an SQS queue (moto),",
            f"{o['events_drop_rate']:.0%} dropped, {o['events_duplicate_rate']:.0%} duplicated,",
            f"each copy {span(*o['events_delay_s'])} s late; the worker runs the",
            "`[contact_events]` defaults: a confirmed connection wakes the contacts enqueued",
            "before it (`wake_passed`), and the safety net polls 10 s, x2, up to 60 s, all",
            "scheduled polls within 10 % of the DescribeContact budget for contacts of a",
            "queue seen to serve oldest first (`fifo_poll_budget_share`), 25 % otherwise",
            "(`poll_budget_share`).",
            "Events off: `[watch]` defaults (queue-aware). A third emulator, same seed, has its",
            "agents take waiting contacts in random order (`--service-order random`), events on.",
            "Detection delay = ScreenSharingStartedAt - ConnectedToAgentAt from the emulator's",
            'ground truth; "lost" = the emulator dropped the contact\'s CONNECTED_TO_AGENT event.',
        ]
    )
    table = "\n".join(
        [
            "| run | contacts | p50 (s) | p95 (s) | p99 (s) | DescribeContact/contact | (p95) |",
            "|---|---|---|---|---|---|---|",
            row(
                "events on, event arrived",
                arrived["detection_delay_s"],
                arrived["contacts"],
                arrived["describe_calls_per_contact"],
            ),
            row(
                "events on, event lost",
                lost["detection_delay_s"],
                lost["contacts"],
                lost["describe_calls_per_contact"],
            ),
            row(
                "events on, all",
                on["detection_delay_s"],
                on["connected"],
                on["describe_calls_per_contact"],
            ),
            row(
                "events off",
                off["detection_delay_s"],
                off["connected"],
                off["describe_calls_per_contact"],
            ),
            row(
                "random order: events on, event arrived",
                rnd["arrived"]["detection_delay_s"],
                rnd["arrived"]["contacts"],
                rnd["arrived"]["describe_calls_per_contact"],
            ),
            row(
                "random order: events on, event lost",
                rnd["lost"]["detection_delay_s"],
                rnd["lost"]["contacts"],
                rnd["lost"]["describe_calls_per_contact"],
            ),
        ]
    )
    counts = " ".join(
        [
            f"DescribeContact calls (429s): events on {on['describe_calls']}",
            f"({on['describe_throttled']}), events off {off['describe_calls']}",
            f"({off['describe_throttled']}). With events on, {on['detected_via']['event']}",
            f"connections were confirmed after an event and {on['detected_via']['poll']} by a",
            "poll: a contact woken because a younger one was connected",
            f"({on['passed_wakes']['served']} such wakes found it served,",
            f"{on['passed_wakes']['waiting']} still waiting) or the safety net.",
            f"In random order: {rnd['passed_wakes']['served']} wakes found the contact served,",
            f"{rnd['passed_wakes']['waiting']} still waiting (then the worker stops inferring for",
            f"that queue); {rnd['describe_calls']} DescribeContact calls",
            f"({fmt(rnd['describe_calls_per_contact']['mean'])} per contact),",
            f"{rnd['describe_throttled']} 429s, {rnd['undetected']} connected but never noticed.",
            f"Connected but never noticed: events on {on['undetected']}, events off",
            f"{off['undetected']}. Events published {on['contact_events']['published']},",
            f"dropped {on['contact_events']['dropped']}, duplicated",
            f"{on['contact_events']['duplicated']}.",
        ]
    )
    targets = " ".join(
        [
            f"Targets: p95 <= {TARGET_ARRIVED_P95_S:g} s for contacts whose event arrived:",
            f"**{verdict[p95_target['pass']]}** ({fmt(p95_target['value'])} s);",
            f"<= {TARGET_CALLS_PER_CONTACT:g} DescribeContact calls per contact (mean), for",
            "contacts whose event arrived:",
            f"**{verdict[arrived_calls_target['pass']]}** ({fmt(arrived_calls_target['value'])});",
            "for all contacts, those found by the safety net included:",
            f"**{verdict[calls_target['pass']]}** ({fmt(calls_target['value'])}).",
        ]
    )
    plot_line = "![detection delay, events on vs off](plots/events-detection.png)"
    heading = "## Contact events: detection on a 2/s DescribeContact budget"
    return "\n\n".join([heading, setup, table, counts, targets, plot_line]) + "\n"


async def run(opts: EventsOptions, ctx: RunContext) -> dict[str, Any]:
    c = opts.center
    say(
        f"events: {c.contacts} contacts, {c.agents} agents, handle {span(*c.handle_time_s)} s, "
        f"DescribeContact {c.describe_rate:g}/s; events on and off side by side "
        f"(about {c.drain_estimate_s():.0f} s)"
    )
    async with servers.sqs_server(ctx.log("events-sqs")) as sqs:
        session: AioSession = aio_session()
        async with session.create_client(
            "sqs", region_name=REGION, endpoint_url=sqs.url, config=aws_client_config()
        ) as client:
            events_queue = (await client.create_queue(QueueName="bench-contact-events"))["QueueUrl"]
            random_queue = (await client.create_queue(QueueName="bench-contact-events-random"))[
                "QueueUrl"
            ]
        events_args = [
            "--events-endpoint-url",
            sqs.url,
            "--events-drop-rate",
            f"{opts.drop_rate:g}",
            "--events-duplicate-rate",
            f"{opts.duplicate_rate:g}",
            "--events-delay",
            span(*opts.delay_s),
        ]
        results: dict[str, WorkerRun] = {}

        async def events_on(key: str, queue_url: str, order: str) -> None:
            """A worker reading contact events from `queue_url`, agents serving in `order`."""
            async with servers.emulator(
                [
                    *c.emulator_args(ctx.seed),
                    *("--events-queue-url", queue_url, *events_args),
                    *("--service-order", order),
                ],
                ctx.log(f"events-{key}-emulator"),
            ) as emulator:
                results[key] = await run_worker(
                    c,
                    emulator.url,
                    run=f"events-{key}",
                    seed=ctx.seed,
                    contact_events={"queue_url": queue_url, "endpoint_url": sqs.url},
                )

        async def events_off() -> None:
            async with servers.emulator(
                c.emulator_args(ctx.seed), ctx.log("events-off-emulator")
            ) as emulator:
                results["off"] = await run_worker(c, emulator.url, run="events-off", seed=ctx.seed)

        with worker_logs(ctx.log("events-workers")):
            async with anyio.create_task_group() as tg:
                tg.start_soon(events_on, "on", events_queue, "fifo")
                tg.start_soon(events_off)
                tg.start_soon(events_on, "random", random_queue, "random")
    figures = events_figures(results["on"], results["off"], results["random"], opts)
    for label, d in (
        ("on, arrived", figures["events_on"]["arrived"]),
        ("on, lost", figures["events_on"]["lost"]),
        ("on, all", figures["events_on"]),
        ("off", figures["events_off"]),
        ("random, arrived", figures["events_on_random_order"]["arrived"]),
        ("random, lost", figures["events_on_random_order"]["lost"]),
    ):
        dd, cc = d["detection_delay_s"], d["describe_calls_per_contact"]
        say(
            f"  events {label:<12} p50 {fmt(dd['p50'])} s  p95 {fmt(dd['p95'])} s  "
            f"p99 {fmt(dd['p99'])} s  DescribeContact/contact {fmt(cc['mean'], 1)}"
        )
    return figures


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes; writes under bench/.runs/")
    p.add_argument("--seed", type=int, default=20261202)
    p.add_argument("--contacts", type=int, help="contacts started at once")
    p.add_argument("--agents", type=int, help="agents of the FIFO queue")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    isolate_environment()
    opts = QUICK if args.quick else EventsOptions()
    if args.contacts or args.agents:
        center = replace(
            opts.center,
            contacts=args.contacts or opts.center.contacts,
            agents=args.agents or opts.center.agents,
        )
        opts = replace(opts, center=center)
    logs = RUNS_DIR / ("events-quick-logs" if args.quick else "events-logs")
    ctx = RunContext(logs=logs, seed=args.seed)
    began = time.monotonic()
    figures = anyio.run(run, opts, ctx)
    wall = time.monotonic() - began
    restore_logging()
    figures["wall_s"] = wall
    plot(figures, output_path("events-detection", args.quick))
    out = {k: v for k, v in figures.items() if k != "plot_values"}
    if args.quick:
        write_quick(NAME, out)
    else:
        record(NAME, out, markdown(figures, wall))
    say(f"events: wall time {wall:.0f} s")
    print(json.dumps(out, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
