"""Contact events on vs off: how soon an agent connection is noticed on a tight DescribeContact
budget, and what it costs in DescribeContact calls.

`python -m bench events`. Fresh emulators with the same seed and the same contact-center model
(`bench.center`: one FIFO queue, `agents` agents, a patience nobody runs out of), DescribeContact
held to 2/s (burst 3) in each emulator and in each worker's `[connect]`; StartWebRTCContact and
StartScreenSharing raised so that only detection is measured. Side by side, in one run:

* on: the emulator publishes contact events to a queue on a local SQS server (moto, its own
  process), best effort: 10 % never delivered, 10 % delivered twice, each copy 0.05-0.6 s late;
  the worker reads them (`[contact_events] queue_url`), and polls on the safety-net schedule;
* off: the worker polls with the `[watch]` defaults (queue-aware);
* random: events on, agents taking waiting contacts in random order.

Detection delay is split, with events on, by whether the contact's CONNECTED_TO_AGENT event
arrived or was dropped (`ContactEventsDropped`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from aiobotocore.session import AioSession
from matplotlib.ticker import FuncFormatter, NullFormatter

from orchestrator.sqs import aws_client_config
from orchestrator.testing.processes import emulator_process, sqs_server_process
from orchestrator.testing.requests import REGION
from orchestrator.testing.stats import distribution

from .center import RAISED, Center, WorkerRun, delays, describe_figures, run_worker
from .daemon import worker_logs
from .harness import (
    RunContext,
    Scenario,
    Target,
    figure,
    fmt,
    run_all,
    say,
    span,
    table,
    verdict,
)

CONNECTED = "CONNECTED_TO_AGENT"
TARGET_ARRIVED_P95_S = 1.5
TARGET_CALLS_PER_CONTACT = 2.0


CENTER = Center(
    contacts=70, agents=30, fillers=30, handle_time_s=(60.0, 120.0), describe_rate=2.0,
    describe_burst=3.0,
)  # fmt: skip


@dataclass(frozen=True)
class EventsOptions:
    center: Center = CENTER
    drop_rate: float = 0.10
    duplicate_rate: float = 0.10
    delay_s: tuple[float, float] = (0.05, 0.6)


QUICK = EventsOptions(
    center=Center(
        contacts=10, agents=3, fillers=3, handle_time_s=(5.0, 7.0), describe_rate=2.0,
        describe_burst=3.0,
    )
)  # fmt: skip


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
    return {
        **describe_figures(on),
        **{
            fate: {
                "contacts": len(group),
                "detection_delay_s": distribution(delays(group)),
                "describe_calls_per_contact": calls(group),
            }
            for fate, group in split_by_event(on.contacts).items()
        },
        "contact_events": {
            "published": int(on.stats.get("contact_events_published", 0)),
            "dropped": int(on.stats.get("contact_events_dropped", 0)),
            "duplicated": int(on.stats.get("contact_events_duplicated", 0)),
            "worker": on.contact_events,
        },
    }


def events_figures(runs: Mapping[str, WorkerRun], opts: EventsOptions) -> dict[str, Any]:
    c = opts.center
    figures: dict[str, Any] = {
        "options": {
            **asdict(c),
            "waiting_at_start": c.waiting_at_start,
            "drain_estimate_s": c.drain_estimate_s(),
            "events_drop_rate": opts.drop_rate,
            "events_duplicate_rate": opts.duplicate_rate,
            "events_delay_s": list(opts.delay_s),
            "other_quotas": [RAISED, RAISED],
        },
        "plot_values": {},
    }
    if "on" in runs:
        figures["events_on"] = with_events_figures(runs["on"])
        groups = split_by_event(runs["on"].contacts)
        figures["plot_values"]["events_on_arrived"] = delays(groups["arrived"])
        figures["plot_values"]["events_on_lost"] = delays(groups["lost"])
    if "off" in runs:
        figures["events_off"] = describe_figures(runs["off"])
        figures["plot_values"]["events_off"] = delays(runs["off"].contacts)
    if "random" in runs:
        figures["events_on_random_order"] = with_events_figures(runs["random"])
    return figures


def plot(figures: Mapping[str, Any], path: Path) -> None:
    values = figures["plot_values"]
    series = [
        ("events on, CONNECTED_TO_AGENT arrived", values.get("events_on_arrived"), "tab:blue"),
        ("events on, CONNECTED_TO_AGENT lost", values.get("events_on_lost"), "tab:orange"),
        ("events off ([watch] defaults)", values.get("events_off"), "tab:gray"),
    ]
    with figure(path, figsize=(8, 4.5)) as (_, ax):
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


def markdown(figures: Mapping[str, Any]) -> str:
    wall_s = figures["wall_s"]
    o, on, off = figures["options"], figures["events_on"], figures["events_off"]
    rnd = figures["events_on_random_order"]
    t = figures["targets"]
    arrived, lost = on["arrived"], on["lost"]
    p95_target, calls_target = t["arrived_detection_p95_s"], t["describe_calls_per_contact_mean"]
    arrived_calls_target = t["arrived_describe_calls_per_contact_mean"]
    wait = on["time_to_agent_s"]

    setup = " ".join(
        [
            f"`python -m bench events` (wall time {wall_s:.0f} s).",
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
    runs = [
        ("events on, event arrived", arrived, "contacts"),
        ("events on, event lost", lost, "contacts"),
        ("events on, all", on, "connected"), ("events off", off, "connected"),
        ("random order: events on, event arrived", rnd["arrived"], "contacts"),
        ("random order: events on, event lost", rnd["lost"], "contacts"),
    ]  # fmt: skip
    rows = [
        [label, str(r[n]), *(fmt(r["detection_delay_s"][q]) for q in ("p50", "p95", "p99")),
         *(fmt(r["describe_calls_per_contact"][q], d) for q, d in (("mean", 1), ("p95", 0)))]
        for label, r, n in runs
    ]  # fmt: skip
    header = ["run", "contacts", "p50 (s)", "p95 (s)", "p99 (s)"]
    header += ["DescribeContact/contact", "(p95)"]
    delay_table = table(header, rows)
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
            f"{verdict(p95_target)} ({fmt(p95_target['value'])} s);",
            f"<= {TARGET_CALLS_PER_CONTACT:g} DescribeContact calls per contact (mean), for",
            "contacts whose event arrived:",
            f"{verdict(arrived_calls_target)} ({fmt(arrived_calls_target['value'])});",
            "for all contacts, those found by the safety net included:",
            f"{verdict(calls_target)} ({fmt(calls_target['value'])}).",
        ]
    )
    plot_line = "![detection delay, events on vs off](plots/events-detection.png)"
    heading = "## Contact events: detection on a 2/s DescribeContact budget"
    return "\n\n".join([heading, setup, delay_table, counts, targets, plot_line]) + "\n"


async def measure(opts: EventsOptions, ctx: RunContext) -> dict[str, Any]:
    c = opts.center
    say(
        f"events: {c.contacts} contacts, {c.agents} agents, handle {span(*c.handle_time_s)} s, "
        f"DescribeContact {c.describe_rate:g}/s; events on and off side by side "
        f"(about {c.drain_estimate_s():.0f} s)"
    )
    began = time.monotonic()
    async with sqs_server_process(ctx.log("sqs")) as sqs:
        async with AioSession().create_client(
            "sqs", region_name=REGION, endpoint_url=sqs.url, config=aws_client_config()
        ) as client:
            made = {k: await client.create_queue(QueueName=f"events-{k}") for k in ("on", "random")}
            queues = {key: queue["QueueUrl"] for key, queue in made.items()}
        events_args = [
            "--events-endpoint-url", sqs.url, "--events-drop-rate", f"{opts.drop_rate:g}",
            "--events-duplicate-rate", f"{opts.duplicate_rate:g}",
            "--events-delay", span(*opts.delay_s),
        ]  # fmt: skip

        async def one(key: str) -> WorkerRun:
            """Events on (agents serving oldest first, or in random order), or off."""
            args = c.emulator_args(ctx.seed)
            events: dict[str, Any] = {}
            if key != "off":
                args += ["--events-queue-url", queues[key], *events_args]
                args += ["--service-order", "random" if key == "random" else "fifo"]
                events = {"queue_url": queues[key], "endpoint_url": sqs.url}
            async with emulator_process(args, ctx.log(f"{key}-emulator")) as emu:
                return await run_worker(
                    c, emu.url, run=f"events-{key}", seed=ctx.seed, contact_events=events
                )

        with worker_logs(ctx.log("workers")):
            runs = await run_all({k: partial(one, k) for k in VARIANTS if ctx.wants(k)})
    figures = events_figures(runs, opts)
    figures["wall_s"] = time.monotonic() - began
    for run in ("events_on", "events_off", "events_on_random_order"):
        for fate in ("all", "arrived", "lost"):
            d = figures.get(run) if fate == "all" else figures.get(run, {}).get(fate)
            if d is not None:
                dd, calls_d = d["detection_delay_s"], d["describe_calls_per_contact"]
                say(
                    f"  {run:<22} {fate:<7} p50 {fmt(dd['p50'])} s  p95 {fmt(dd['p95'])} s  "
                    f"p99 {fmt(dd['p99'])} s  DescribeContact/contact {fmt(calls_d['mean'], 1)}"
                )
    return figures


VARIANTS = ("on", "off", "random")
TARGETS = {
    "arrived_detection_p95_s": Target(
        "events_on.arrived.detection_delay_s.p95", "<=", TARGET_ARRIVED_P95_S
    ),
    "describe_calls_per_contact_mean": Target(
        "events_on.describe_calls_per_contact.mean", "<=", TARGET_CALLS_PER_CONTACT
    ),
    "arrived_describe_calls_per_contact_mean": Target(
        "events_on.arrived.describe_calls_per_contact.mean", "<=", TARGET_CALLS_PER_CONTACT
    ),
}
SCENARIO = Scenario(
    "events", "contact events on vs off, detection on a tight DescribeContact budget",
    EventsOptions(), QUICK, measure, markdown, seed=20261202, targets=TARGETS, plot=plot,
    plot_name="events-detection", variants=VARIANTS, unrecorded=("plot_values",),
)  # fmt: skip
