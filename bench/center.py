"""An emulated contact center (one FIFO queue, `agents` agents) and the real worker, in this
process, watching contacts wait in it on a DescribeContact budget: the set-up of the detection,
contact-events and polling scenarios.

Detection delay = ScreenSharingStartedAt - ConnectedToAgentAt, per contact, from the emulator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from aiobotocore.session import AioSession

from orchestrator.connect.gateway import connect_client_config
from orchestrator.connect.operations import Operation
from orchestrator.metrics import Metrics
from orchestrator.testing.emulator import EmulatorControl
from orchestrator.testing.processes import quota_args
from orchestrator.testing.requests import REGION
from orchestrator.testing.waiting import eventually

from . import analysis
from .daemon import FinalCounter, memory_settings, memory_worker, run_until
from .harness import Quotas, request_body, request_id, request_params, span

#: StartWebRTCContact and StartScreenSharing, raised so that only detection is measured.
RAISED = 1000.0
#: Request index of the first filler contact (far from the worker's 0..contacts).
FILLER_INDEX = 50_000


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
    #: How long after the expected drain (steady state: after it ends) a run may go on.
    slack_s: float = 60.0
    #: Steady state: after the first `contacts`, one more starts each time one of them gets an
    #: agent, so that `contacts` wait at any time, until `steady_s` after agents start to free
    #: up (the shortest handle time); the run then stops `slack_s` later, not drained. 0: the
    #: contacts start at once and drain.
    steady_s: float = 0.0

    def steady_until_s(self) -> float:
        """When the steady state ends, seconds after the first start."""
        return self.handle_time_s[0] + self.steady_s

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
        if self.steady_s:
            return self.steady_until_s() + self.slack_s
        return self.drain_estimate_s() + self.handle_time_s[1] + self.slack_s

    def quotas(self) -> Quotas:
        return {
            Operation.START_WEBRTC_CONTACT: (RAISED, RAISED),
            Operation.DESCRIBE_CONTACT: (self.describe_rate, self.describe_burst),
            Operation.START_SCREEN_SHARING: (RAISED, RAISED),
        }

    def emulator_args(self, seed: int) -> list[str]:
        return [
            "--seed", str(seed), "--max-concurrent-calls", "0", "--agents", str(self.agents),
            "--handle-time", span(*self.handle_time_s),
            "--patience", span(self.patience_s, self.patience_s),
            *quota_args(self.quotas()),
        ]  # fmt: skip


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
    center: Center, emulator_url: str, *, run: str, seed: int, **sections: Mapping[str, Any]
) -> WorkerRun:
    """Start `center.contacts` requests at once through the real worker (`sections` of its
    settings: `watch`, `contact_events`), and more in a steady state (`feed`), run it until every
    lifecycle ended (or the deadline), then read the emulator's ground truth."""
    settings = memory_settings(run, center.contacts, emulator_url, center.quotas(), **sections)
    # Steady state: more requests than will end before the deadline.
    counter = FinalCounter(expected=10**9 if center.steady_s else center.contacts)
    metrics = Metrics()
    if center.fillers:
        await start_fillers(emulator_url, center.fillers)
    async with memory_worker(
        settings, session=AioSession(), metrics=metrics, extra_sinks=[counter], seed=seed
    ) as (worker, queue):
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            fed: list[int] = []

            async def send() -> None:
                fed.append(
                    await feed(center, emulator_url, lambda i: queue.send(request_body(run, i)))
                )

            tg.start_soon(send)
            completed = await run_until(worker, counter, center.deadline_s())
        wall = (counter.last_final or time.monotonic()) - started
    n = fed[0]
    truth = EmulatorControl(emulator_url, timeout_s=120)
    # The worker's contacts, by the ClientToken it derives from each request id (not fillers).
    ours, _ = analysis.match_requests(
        await truth.contacts(), [request_id(run, i) for i in range(n)]
    )

    def counts(name: str, label: str, values: Sequence[str]) -> dict[str, int]:
        return {v: int(metrics.value(name, {label: v})) for v in values}

    return WorkerRun(
        contacts=list(ours.values()),
        stats=await truth.stats(),
        completed=completed,
        wall_s=wall,
        finals=dict(counter.finals),
        detected_via=counts(
            "orchestrator_agent_detection_delay_seconds_count", "via", ("event", "poll")
        ),
        contact_events=counts(
            "orchestrator_contact_events_total",
            "outcome",
            ("matched", "early", "unmatched", "duplicate", "malformed"),
        ),
        passed_wakes=counts("orchestrator_passed_wakes_total", "result", ("served", "waiting")),
    )


async def feed(center: Center, emulator_url: str, start: Callable[[int], object]) -> int:
    """Start contacts 0 to `center.contacts - 1` (`start(index)`) at once; in a steady state,
    then one more each time one of them gets an agent (the emulator's ground truth, looked at
    every second) until `center.steady_until_s()`. Returns how many were started."""
    for index in range(center.contacts):
        start(index)
    started, began = center.contacts, time.monotonic()
    truth = EmulatorControl(emulator_url, timeout_s=30)
    while time.monotonic() - began < center.steady_until_s() and center.steady_s:
        await anyio.sleep(1.0)
        # The fillers were connected before the first start.
        agents = sum(1 for c in await truth.contacts() if c.get("ConnectedToAgentAt"))
        while started - (agents - center.fillers) < center.contacts:
            start(started)
            started += 1
    return started


async def start_fillers(emulator_url: str, count: int) -> None:
    """Start `count` contacts without the worker (never watched) and wait until the emulator has
    given each an agent."""
    async with AioSession().create_client(
        "connect", region_name=REGION, endpoint_url=emulator_url, config=connect_client_config()
    ) as client:
        for i in range(count):
            await client.start_web_rtc_contact(**request_params(FILLER_INDEX + i))
    truth = EmulatorControl(emulator_url, timeout_s=60)

    async def all_connected() -> bool:
        return sum(bool(c.get("ConnectedToAgentAt")) for c in await truth.contacts()) >= count

    await eventually(all_connected, within=30, interval=0.1, message="the fillers to connect")


def delays(contacts: Sequence[Mapping[str, Any]]) -> list[float]:
    """ScreenSharingStartedAt - ConnectedToAgentAt of the contacts that have both."""
    return [
        float(c["ScreenSharingStartedAt"]) - float(c["ConnectedToAgentAt"])
        for c in contacts
        if c.get("ScreenSharingStartedAt") is not None and c.get("ConnectedToAgentAt") is not None
    ]


def describe_figures(run: WorkerRun) -> dict[str, Any]:
    """Detection, DescribeContact calls per contact and 429s of one run."""
    ops = analysis.operation_stats(run.stats)[Operation.DESCRIBE_CONTACT]
    found = analysis.detection(run.contacts)
    keep = ("contacts", "connected", "undetected", "never_connected", "detection_delay_s")
    return {
        **{k: found[k] for k in keep},
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
