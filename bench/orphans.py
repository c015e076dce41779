"""Agents' dead calls: contacts the orchestrator let go of at `[watch] max_wait_s`, left queued
(`on_timeout = "leave"`, the behaviour before issue 20) or stopped (`"stop"`, the default).

`python -m bench orphans`. Two emulators with the same seed and the same contact-center model
(`bench.center`: one FIFO queue, few agents, customers who never give up), more contacts than
the agents can reach within `max_wait_s`, so many time out. Side by side, in one run:

* leave: a timed-out contact stays at the head of the queue; an agent answers it later, to a
  customer who was told the call timed out (a dead call), while the live contacts behind it wait;
* stop: the worker stops it (StopContact, after a DescribeContact confirms no agent has it).
  An agent who connects between that confirmation's answer and the stop is cut off: the race no
  caller can close, counted with its window (`ground_truth.cut_off`).

Each run goes on, after the worker's last final event, until the emulator's queue is empty, so
every dead call the agents would take is counted. Dead calls = contacts an agent reached after
their request's final event said none had it (`reached_agent_after_let_go`, the emulator's
ground truth joined with the final events); agent time on them = their handle time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from aiobotocore.session import AioSession

from orchestrator.metrics import Metrics
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import EmulatorControl
from orchestrator.testing.ground_truth import cut_off, reached_agent_after_let_go
from orchestrator.testing.processes import emulator_process
from orchestrator.testing.stats import distribution
from orchestrator.testing.waiting import eventually

from .center import Center
from .daemon import FinalCounter, memory_settings, memory_worker, run_until, worker_logs
from .harness import RunContext, Scenario, Target, fmt, request_body, run_all, say, span, table

VARIANTS = ("leave", "stop")
#: How long after the worker's last final event the emulator's queue may take to empty.
_DRAIN_SLACK_S = 30.0


CENTER = Center(
    contacts=40, agents=4, handle_time_s=(10.0, 20.0), describe_rate=5.0, describe_burst=5.0
)


@dataclass(frozen=True)
class OrphansOptions:
    center: Center = CENTER
    max_wait_s: float = 30.0


QUICK = OrphansOptions(
    center=Center(
        contacts=12, agents=2, handle_time_s=(4.0, 6.0), describe_rate=5.0, describe_burst=5.0
    ),
    max_wait_s=8.0,
)


async def run_variant(
    opts: OrphansOptions, emulator_url: str, on_timeout: str, seed: int
) -> dict[str, Any]:
    """One worker with `[watch] on_timeout`, then the agents until the queue is empty."""
    c, n, run = opts.center, opts.center.contacts, f"orphans-{on_timeout}"
    watch = {"max_wait_s": opts.max_wait_s, "on_timeout": on_timeout}
    settings = memory_settings(run, n, emulator_url, c.quotas(), watch=watch)
    counter, sink, metrics = FinalCounter(expected=n), MemorySink(), Metrics()
    async with memory_worker(
        settings, session=AioSession(), metrics=metrics, extra_sinks=[counter, sink], seed=seed
    ) as (worker, queue):
        started = time.monotonic()
        for i in range(n):
            queue.send(request_body(run, i))
        completed = await run_until(worker, counter, c.deadline_s())
    control = EmulatorControl(emulator_url, timeout_s=120)

    async def queue_empty() -> bool:
        waiting = [c for c in await control.contacts() if c["State"] in ("INITIATED", "QUEUED")]
        return not waiting

    await eventually(
        queue_empty, within=c.deadline_s() + _DRAIN_SLACK_S, interval=0.5, message="the queue"
    )
    wall_s = time.monotonic() - started
    contacts = await control.contacts()
    dead = set(reached_agent_after_let_go(sink.events, contacts))
    handled = {
        c["ContactId"]: float(c["DisconnectedAt"]) - float(c["ConnectedToAgentAt"])
        for c in contacts
        if c["ConnectedToAgentAt"] is not None and c["DisconnectedAt"] is not None
    }
    alive = [
        float(c["ConnectedToAgentAt"]) - float(c["CreatedAt"])
        for c in contacts
        if c["ContactId"] not in dead and c["ConnectedToAgentAt"] is not None
    ]
    stops = metrics.samples("orchestrator_contacts_stopped_total")
    cuts = cut_off(contacts)
    return {
        "completed": completed,
        "wall_s": wall_s,
        "finals": dict(counter.finals),
        "dead_calls": len(dead),
        "dead_call_agent_s": sum(handled.get(cid, 0.0) for cid in dead),
        "answered_alive": len(alive),
        "time_to_agent_alive_s": distribution(alive),
        "stopped": {f"{lb['reason']}/{lb['result']}": int(v) for lb, v in stops},
        "stopped_with_agent": len(cuts),
        # The agent connected after the confirming DescribeContact answered: the race left.
        "cut_off_in_race": sum(not c.seen_before_stop for c in cuts),
        "race_window_max_s": max((c.window_s or 0.0 for c in cuts), default=None),
        # A DescribeContact had shown the agent, and it was stopped anyway: a fault.
        "stopped_after_agent_seen": sum(c.seen_before_stop for c in cuts),
        "stop_contact_calls": int((await control.op_stats("StopContact")).get("calls", 0)),
    }


async def measure(opts: OrphansOptions, ctx: RunContext) -> dict[str, Any]:
    c = opts.center
    say(
        f"orphans: {c.contacts} contacts, {c.agents} agents, handle {span(*c.handle_time_s)} s, "
        f"max_wait_s {opts.max_wait_s:g}; leave and stop side by side "
        f"(about {c.drain_estimate_s():.0f} s)"
    )
    began = time.monotonic()

    async def one(on_timeout: str) -> dict[str, Any]:
        async with emulator_process(
            c.emulator_args(ctx.seed), ctx.log(f"{on_timeout}-emulator")
        ) as emu:
            return await run_variant(opts, emu.url, on_timeout, ctx.seed)

    with worker_logs(ctx.log("workers")):
        runs = await run_all({k: partial(one, k) for k in VARIANTS if ctx.wants(k)})
    figures: dict[str, Any] = {
        "options": {**asdict(c), "max_wait_s": opts.max_wait_s},
        **runs,
        "wall_s": time.monotonic() - began,
    }
    for key, r in runs.items():
        say(
            f"  {key:<6} dead calls {r['dead_calls']} ({fmt(r['dead_call_agent_s'], 0)} agent-s), "
            f"answered alive {r['answered_alive']}, stopped {r['stopped']}, "
            f"stopped with agent {r['stopped_with_agent']} "
            f"({r['stopped_after_agent_seen']} after a DescribeContact showed the agent)"
        )
    return figures


def markdown(figures: Mapping[str, Any]) -> str:
    o, leave, stop = figures["options"], figures["leave"], figures["stop"]
    setup = " ".join(
        [
            f"`python -m bench orphans` (wall time {figures['wall_s']:.0f} s). Two emulators",
            f"with the same seed, one FIFO queue served by {o['agents']} agents (handle time",
            f"{span(*o['handle_time_s'])} s), customers who never hang up; the worker starts",
            f"{o['contacts']} contacts at once with `[watch] max_wait_s = {o['max_wait_s']:g}`, so",
            "most time out. Each run goes on until the emulator's queue is empty. Dead call: a",
            "contact an agent reached after its request's final event said no agent had it",
            "(emulator ground truth joined with the final events).",
        ]
    )

    def row(label: str, r: Mapping[str, Any]) -> list[str]:
        wait = r["time_to_agent_alive_s"]
        return [
            label,
            str(r["finals"].get("contact.timed_out", 0)),
            str(r["dead_calls"]),
            fmt(r["dead_call_agent_s"], 0),
            str(r["answered_alive"]),
            fmt(wait["p50"], 1),
            str(r["stop_contact_calls"]),
            _cut_off(r),
        ]

    header = ["on_timeout", "timed out", "dead calls", "agent time on them (s)"]
    header += ["answered alive", "their time to agent p50 (s)", "StopContact calls"]
    header += ["stopped with an agent: in the race (longest window, ms) / after it was seen"]
    rows = [row('"leave" (before)', leave), row('"stop" (default)', stop)]
    t = figures.get("targets", {})
    verdicts = " ".join(
        f"{name}: {'met' if v.get('pass') else 'missed'} ({v.get('value')})."
        for name, v in t.items()
    )
    heading = "## Agents' dead calls: timed-out contacts left or stopped"
    return "\n\n".join([heading, setup, table(header, rows), f"Targets: {verdicts}"]) + "\n"


def _cut_off(r: Mapping[str, Any]) -> str:
    """Stops that cut off an agent: in the race (the agent came after the confirming
    DescribeContact answered; the longest such window) / after a DescribeContact showed him."""
    if "cut_off_in_race" not in r:  # recorded before the two were told apart
        return str(r["stopped_with_agent"])
    window = r["race_window_max_s"]
    race = f"{r['cut_off_in_race']}" + ("" if window is None else f" ({window * 1000:.0f})")
    return f"{race} / {r['stopped_after_agent_seen']}"


TARGETS = {
    "dead_calls_with_stop": Target("stop.dead_calls", "<=", 0),
    "stopped_after_agent_seen": Target("stop.stopped_after_agent_seen", "<=", 0),
}
SCENARIO = Scenario(
    "orphans", "agents' dead calls: timed-out contacts left (before) or stopped (default)",
    OrphansOptions(), QUICK, measure, markdown, seed=20261203, targets=TARGETS,
    variants=VARIANTS,
)  # fmt: skip
