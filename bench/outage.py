"""Connect outage: Connect stops answering for minutes while contacts wait for agents and more
requests are queued; held in place (today) against no hold (`outage_hold = false`: each call
fails after its retry budget and the message is handed back, as before this round; the renewal
of messages near their last receive, added since, now carries those requests through too, at
the cost of hand-backs, repeated request.received and log volume), side by side.

`python -m bench outage`. Each mode runs one `orchestrator run` process on its own emulator
process and request queue (a dead-letter queue after 5 receives): the waiting requests are sent,
their contacts start, then the emulator is frozen (SIGSTOP: connections hang and time out, as
when Connect is unreachable) for the outage, the queued requests are sent meanwhile, and the
emulator is thawed (SIGCONT; its contacts' clocks ran on). Agents take each contact a while
after it starts (during the outage, for the waiting ones), so every request's right outcome is
`screen_sharing.started`. Figures come from the events queue (final events), the emulator's
ground truth (contacts per request), the dead-letter queue and the worker's log.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from orchestrator.engine.request import client_token
from orchestrator.testing.processes import sqs_server_process
from orchestrator.testing.queues import queue_counts, send_all
from orchestrator.testing.workers import BRISK, worker_rig

from .drain import MAX_RECEIVE_COUNT, Mode
from .harness import (
    RunContext,
    Scenario,
    Target,
    num,
    request_body,
    request_id,
    run_all,
    say,
    table,
    verdict,
)

RIGHT = "screen_sharing.started"

MODES = (
    Mode("held", "held in place (Connect unreachable is a deployment fault)", {}),
    Mode("failed", "no hold: handed back after the retry budget (renewal still on)", {
        "CONNECT__OUTAGE_HOLD": "false",
    }),
)  # fmt: skip


@dataclass(frozen=True)
class OutageOptions:
    #: Contacts started and waiting for agents when Connect stops answering.
    waiting: int = 20
    #: Requests sent while it does not answer.
    queued: int = 20
    outage_s: float = 180.0
    #: Seconds from a contact's start to its agent (MIN:MAX), and the talk time after.
    agent_delay: str = "30:60"
    talk_time: str = "600:600"
    #: How long after the outage every request may take to end.
    settle_s: float = 180.0


QUICK = OutageOptions(waiting=6, queued=6, outage_s=25.0, agent_delay="8:12", settle_s=90.0)
QUOTAS = dict.fromkeys(
    ("StartWebRTCContact", "DescribeContact", "StartScreenSharing"), (20.0, 20.0)
)


async def _mode(
    mode: Mode, options: OutageOptions, sqs_url: str, ctx: RunContext
) -> dict[str, Any]:
    emulator_args = [
        "--agent-delay", options.agent_delay, "--talk-time", options.talk_time,
        "--abandon-rate", "0", "--max-concurrent-calls", "1000", "--seed", str(ctx.seed),
    ]  # fmt: skip
    settings = {
        **BRISK,
        "WATCH__MAX_INTERVAL_S": 2.0,
        "CONNECT__RETRY_MAX_TIME_S": 10,
        **mode.settings,
    }
    waiting = [request_id(f"{mode.name}-w", i) for i in range(options.waiting)]
    queued = [request_id(f"{mode.name}-q", i) for i in range(options.queued)]
    workdir = ctx.logs / f"outage-{mode.name}"
    workdir.mkdir(parents=True, exist_ok=True)
    async with worker_rig(
        sqs_url, workdir, emulator_args=emulator_args, quotas=QUOTAS, settings=settings,
        prefix=f"outage-{mode.name}", max_receive_count=MAX_RECEIVE_COUNT,
    ) as rig:  # fmt: skip
        follower = rig.follower
        await send_all(
            rig.sqs,
            rig.queues.requests,
            [request_body(f"{mode.name}-w", i) for i in range(len(waiting))],
        )
        (worker,) = await rig.pool.start(1)

        def started() -> set[str]:
            return {e["request_id"] for e in follower.events if e["type"] == "contact.started"}

        if not await follower.wait_until(lambda: started() >= set(waiting), time.monotonic() + 120):
            raise RuntimeError(f"{mode.name}: the waiting contacts did not all start")
        say(f"  {mode.name}: {len(waiting)} contacts waiting; Connect stops answering")
        os.kill(rig.emulator.pid, signal.SIGSTOP)
        down_wall = time.time()
        try:
            await send_all(
                rig.sqs,
                rig.queues.requests,
                [request_body(f"{mode.name}-q", i) for i in range(len(queued))],
            )
            await anyio.sleep(options.outage_s)  # the outage itself
        finally:
            os.kill(rig.emulator.pid, signal.SIGCONT)
        up_wall = time.time()
        say(f"  {mode.name}: Connect answers again after {up_wall - down_wall:.0f} s")
        everyone = waiting + queued
        settled = await rig.all_final(everyone, stall_s=options.settle_s, within_s=options.settle_s)
        contacts = await rig.control.contacts()
        dead = sum(await queue_counts(rig.sqs, rig.queues.dead_letters))
        await rig.pool.stop(timeout_s=60)
        records = worker.records()
    return _figures(
        mode,
        everyone=everyone,
        events=follower.events,
        contacts=contacts,
        dead=dead,
        records=records,
        down_wall=down_wall,
        up_wall=up_wall,
        settled=settled,
    )


def _figures(
    mode: Mode,
    *,
    everyone: list[str],
    events: list[dict[str, Any]],
    contacts: list[dict[str, Any]],
    dead: int,
    records: list[dict[str, Any]],
    down_wall: float,
    up_wall: float,
    settled: bool,
) -> dict[str, Any]:
    finals: dict[str, list[dict[str, Any]]] = {}
    started: dict[str, str] = {}
    for event in events:
        if event["type"] == "contact.started":
            started[event["request_id"]] = event["contact_id"]
        if event.get("final"):
            finals.setdefault(event["request_id"], []).append(event)
    first = {r: f[0] for r, f in finals.items()}
    tokens = Counter(c["ClientToken"] for c in contacts)
    per_request = [tokens.get(client_token(r, "start"), 0) for r in everyone]
    levels = Counter(str(r.get("level", "info")) for r in records)
    return {
        "label": mode.label,
        "requests": len(everyone),
        "settled": settled,
        "outage_s": round(up_wall - down_wall, 1),
        "right_final": sum(1 for r in everyone if first.get(r, {}).get("type") == RIGHT),
        "right_final_share": sum(1 for r in everyone if first.get(r, {}).get("type") == RIGHT)
        / max(1, len(everyone)),
        "no_final": sum(1 for r in everyone if r not in first),
        "failed": sum(1 for e in first.values() if e["type"] == "request.failed"),
        "finals_by_type": dict(Counter(e["type"] for e in first.values())),
        "more_than_one_final": sum(1 for f in finals.values() if len(f) > 1),
        # A final event that does not name the contact the requester was told about.
        "final_without_known_contact_id": sum(
            1 for r, e in first.items() if r in started and e.get("contact_id") != started[r]
        ),
        "dead_lettered": dead,
        "contacts_per_request_max": max(per_request, default=0),
        "requests_with_one_contact": sum(1 for n in per_request if n == 1),
        "log_lines": len(records),
        "log_warnings_and_errors": levels["warning"] + levels["error"] + levels["critical"],
    }


async def measure(options: OutageOptions, ctx: RunContext) -> dict[str, Any]:
    modes = [m for m in MODES if ctx.wants(m.name)]
    say(
        f"outage: {options.waiting} contacts waiting, {options.queued} queued, Connect "
        f"unreachable {options.outage_s:g} s; modes {', '.join(m.name for m in modes)}"
    )
    async with sqs_server_process(ctx.log("outage-sqs")) as sqs:
        results = await run_all(
            {m.name: functools.partial(_mode, m, options, sqs.url, ctx) for m in modes}
        )
    return {"options": vars(options), "modes": results}


def markdown(figures: Mapping[str, Any]) -> str:
    options = figures["options"]
    modes = figures["modes"]
    rows = []
    for name, m in modes.items():
        rows.append([
            f"{name}: {m['label']}",
            f"{m['right_final']} / {m['requests']}",
            num(m["failed"]),
            num(m["no_final"]),
            num(m["dead_lettered"]),
            num(m["contacts_per_request_max"]),
            num(m["final_without_known_contact_id"]),
            f"{m['log_lines']} ({m['log_warnings_and_errors']} warnings or errors)",
        ])  # fmt: skip
    targets = figures.get("targets", {})
    lines = [
        "## Connect outage: contacts waiting and requests queued while Connect does not answer",
        "",
        f"{options['waiting']} contacts waiting for agents and {options['queued']} requests "
        f"queued while Connect does not answer for {options['outage_s']:g} s (the emulator "
        "process frozen: connections time out); one worker per mode, maxReceiveCount "
        f"{MAX_RECEIVE_COUNT}. Agents come {options['agent_delay']} s after each contact starts, "
        "so the right final event of every request is `screen_sharing.started`.",
        "",
        table(
            [
                "mode",
                "right final event",
                "request.failed",
                "no final event",
                "DLQ",
                "contacts per request (max)",
                "final event without its contact id",
                "log lines",
            ],
            rows,
        ),
        "",
    ]
    for name, target in sorted(targets.get("held", {}).items()):
        lines.append(f"- held, {name}: {target['value']} {target['op']} {target['threshold']:g}: "
                     f"{verdict(target)}")  # fmt: skip
    return "\n".join(lines)


SCENARIO = Scenario(
    "outage",
    "Connect outage: contacts waiting and requests queued while Connect does not answer",
    OutageOptions(),
    QUICK,
    measure,
    markdown,
    seed=24,
    targets={
        "held": {
            "right_final_share": Target("modes.held.right_final_share", "==", 1.0),
            "dead_lettered": Target("modes.held.dead_lettered", "==", 0),
            "contacts_per_request_max": Target("modes.held.contacts_per_request_max", "<=", 1),
            "final_without_known_contact_id": Target(
                "modes.held.final_without_known_contact_id", "==", 0
            ),
        }
    },
    variants=tuple(m.name for m in MODES),
)
