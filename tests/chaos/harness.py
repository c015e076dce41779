"""Chaos soak: several worker processes on one queue, a faulty Connect, workers killed mid-flight.

Used by tests/chaos/test_chaos.py (a short run in `make test`) and `python -m bench.soak` (a long
one). Everything is real and talks over loopback:

* an SQS server (passed in: the test session's, or one the soak starts), holding a request queue
  whose redrive policy moves a message to a dead-letter queue after `max_receive_count` receives,
  and an events queue every worker's SQS sink writes to;
* the Connect emulator in its own process (`python -m orchestrator emulator`), with 5xx faults,
  dropped connections after the call took effect, added latency, quotas low enough that the
  workers (each given the whole quota: `quota_share = 1.0`) are throttled, abandons, and a cap on
  concurrent calls;
* `python -m orchestrator run` worker processes configured by environment variables, with a short
  visibility timeout so that a killed worker's messages come back quickly.

The short run puts every message on the queue up front; a long one feeds it as it drains
(`backlog`), since moto's ReceiveMessage slows down with queue depth. While the queue drains, a
seeded schedule SIGKILLs workers (and SIGTERMs some, a graceful drain)
at random points of progress, starting a replacement each time. Then `check` holds the run to the
promises: one final outcome per request, no second contact for a request, screen sharing only
where allowed and connected, rejected input in the DLQ and nowhere else, no token in any log.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio
from aiobotocore.session import get_session
from anyio.abc import Process

from orchestrator.engine.events import FINAL_TYPES
from orchestrator.engine.request import RequestRejected, client_token, parse_request
from orchestrator.testing.emulator import EmulatorControl
from tests.support import (
    create_queue_with_dlq,
    drain_bodies,
    queue_counts,
    send_all,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

REGION = "us-east-1"
INSTANCE_ID = "2f8c7e1a-4b3d-4c5e-9f60-7a8b9c0d1e2f"
FLOW_ID = "8d7c6b5a-4e3f-4a1b-9c2d-0e1f2a3b4c5d"
FINALS = frozenset(t.value for t in FINAL_TYPES)
EMULATOR_READY = "Connect emulator listening on "


@dataclass(frozen=True)
class ChaosPlan:
    """Sizes, faults and the chaos schedule of one run."""

    requests: int = 240
    #: Copies of the poison set (11 messages each, ids made unique per copy).
    poison_sets: int = 1
    workers: int = 2
    kills: int = 4
    graceful_stops: int = 1
    seed: int = 20261121
    # Queues.
    visibility_timeout_s: int = 5
    max_receive_count: int = 5
    max_in_flight: int = 60
    # The emulated contact center and its faults.
    error_rate: float = 0.05
    drop_rate: float = 0.02
    latency_ms: tuple[float, float] = (5.0, 80.0)
    abandon_rate: float = 0.10
    agent_delay_s: tuple[float, float] = (0.3, 2.0)
    talk_time_s: tuple[float, float] = (3.0, 8.0)
    max_concurrent_calls: int = 40
    #: (operation, rate per second, burst): the account's quotas, emulated and configured.
    quotas: tuple[tuple[str, float, float], ...] = (
        ("StartWebRTCContact", 8.0, 5.0),
        ("DescribeContact", 30.0, 30.0),
        ("StartScreenSharing", 8.0, 5.0),
    )
    #: Valid requests on the queue without a final event yet, at most (None: send all at once).
    #: moto's ReceiveMessage costs O(queue depth) (about 0.5 s a call at 1,000 messages), so a
    #: long soak feeds the queue as it drains, as producers do, instead of filling it up front.
    backlog: int | None = None
    #: Chaos strikes when this share of the valid requests has a final event, drawn uniformly.
    window: tuple[float, float] = (0.05, 0.8)
    #: How long the queue may take to drain, and a worker to exit after SIGTERM.
    deadline_s: float = 100.0
    stop_timeout_s: float = 30.0
    grace_period_s: float = 2.0


# -- what goes on the queue ---------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    request_id: str
    body: str
    #: "share" (screen sharing wanted and allowed), "declines" (ScreenSharing false) or
    #: "not-allowed" (the customer may not share their screen).
    kind: str


@dataclass(frozen=True)
class Poison:
    body: str
    #: The RequestId its `request.rejected` is filed under; None when none is readable.
    request_id: str | None


def _document(request_id: Any, index: int) -> dict[str, Any]:
    return {
        "RequestId": request_id,
        "InstanceId": INSTANCE_ID,
        "ContactFlowId": FLOW_ID,
        "ParticipantDetails": {"DisplayName": f"Customer {index}"},
        "Attributes": {"order": str(100_000 + index), "channel": "app"},
        "AllowedCapabilities": {
            "Customer": {"Video": "SEND", "ScreenShare": "SEND"},
            "Agent": {"Video": "SEND", "ScreenShare": "SEND"},
        },
    }


def plan_requests(plan: ChaosPlan, rng: random.Random) -> list[Planned]:
    out = []
    for index in range(plan.requests):
        request_id = f"chaos-{plan.seed}-{index:05d}"
        document = _document(request_id, index)
        draw = rng.random()
        if draw < 0.70:
            kind = "share"
        elif draw < 0.85:
            kind = "declines"
            document["ScreenSharing"] = False
        else:
            kind = "not-allowed"
            document["AllowedCapabilities"]["Customer"] = {"Video": "SEND"}
        out.append(Planned(request_id, json.dumps(document), kind))
    return out


def poison_set(copy: int, seed: int) -> list[Poison]:
    """Eleven invalid messages: unreadable ones (no RequestId can be read) and readable ones."""
    p = f"poison-{seed}-{copy}"
    surrogate = (
        '{"RequestId": "%s-surrogate", "InstanceId": "%s", "ContactFlowId": "%s", '  # noqa: UP031
        '"ParticipantDetails": {"DisplayName": "Jane \\ud800"}}' % (p, INSTANCE_ID, FLOW_ID)
    )
    poisons = [
        Poison(f"this is not JSON, copy {copy} {{", None),
        Poison(f"[{copy}, 2, 3]", None),
        Poison(json.dumps({**_document(12345, copy), "Note": copy}), None),
        Poison(
            json.dumps(
                {"Type": "Notification", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": p}
            ),
            None,
        ),
        Poison("[" * 5000 + str(copy) + "]" * 5000, None),
        Poison(
            json.dumps(
                {**_document(f"{p}-long-name", 0), "ParticipantDetails": {"DisplayName": "x" * 300}}
            ),
            f"{p}-long-name",
        ),
        Poison(
            json.dumps(
                {**_document(f"{p}-types", 0), "ParticipantDetails": "Jane", "ScreenSharing": "yes"}
            ),
            f"{p}-types",
        ),
        Poison(
            json.dumps(
                {
                    **_document(f"{p}-attributes", 0),
                    "Attributes": {f"k{i}": "v" * 1000 for i in range(40)},
                }
            ),
            f"{p}-attributes",
        ),
        Poison(
            json.dumps({**_document(f"{p}-callback", 0), "CallbackUrl": "https://evil.example/"}),
            f"{p}-callback",
        ),
        Poison(surrogate, f"{p}-surrogate"),
        Poison(
            json.dumps({**_document(f"{p}-many-keys", 0), **{f"x{i}": 0 for i in range(5000)}}),
            f"{p}-many-keys",
        ),
    ]
    for poison in poisons:  # the plan checks itself: each is rejected as expected
        if _rejected_as(poison.body) != (poison.request_id,):
            raise AssertionError(f"not rejected as planned: {poison.body[:80]}")
    return poisons


def _rejected_as(body: str) -> tuple[str | None, ...]:
    """(the RequestId of the rejection,) or () when the body is accepted."""
    try:
        parse_request(body)
    except RequestRejected as rejected:
        return (rejected.request_id,)
    return ()


# -- processes ------------------------------------------------------------------------------------


def worker_env(
    plan: ChaosPlan, *, queue_url: str, events_url: str, sqs_url: str, connect_url: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    settings: dict[str, Any] = {
        "AWS__REGION": REGION,
        "AWS__ENDPOINT_URL": sqs_url,
        "QUEUE__URL": queue_url,
        "QUEUE__WAIT_TIME_S": 1,
        "QUEUE__VISIBILITY_TIMEOUT_S": plan.visibility_timeout_s,
        "QUEUE__MAX_IN_FLIGHT": plan.max_in_flight,
        "QUEUE__RETRY_BASE_DELAY_S": 1,
        "QUEUE__RETRY_MAX_DELAY_S": 4,
        "CONNECT__ENDPOINT_URL": connect_url,
        # Every worker takes the whole quota: together they overshoot it and get throttled.
        "CONNECT__QUOTA_SHARE": 1.0,
        "CONNECT__RETRY_MAX_ATTEMPTS": 8,
        "CONNECT__RETRY_MAX_TIME_S": 30,
        "CONNECT__CAPACITY_MAX_WAIT_S": 60,
        "WATCH__FIRST_DELAY_S": 0.2,
        "WATCH__MULTIPLIER": 1.5,
        "WATCH__MAX_INTERVAL_S": 1.0,
        "WATCH__MAX_WAIT_S": 120,
        "WATCH__HEAD_INTERVAL_S": 0.5,
        "EVENTS__SQS_QUEUE_URL": events_url,
        "SHUTDOWN__GRACE_PERIOD_S": plan.grace_period_s,
        "OBSERVABILITY__ENABLED": "false",
        "LOGGING__LEVEL": "INFO",
    }
    keys = {
        "StartWebRTCContact": "START_WEBRTC_CONTACT",
        "DescribeContact": "DESCRIBE_CONTACT",
        "StartScreenSharing": "START_SCREEN_SHARING",
    }
    for operation, rate, burst in plan.quotas:
        settings[f"CONNECT__{keys[operation]}_RATE"] = rate
        settings[f"CONNECT__{keys[operation]}_BURST"] = burst
    env.update({f"ORCHESTRATOR_{key}": str(value) for key, value in settings.items()})
    return env


def emulator_command(plan: ChaosPlan) -> list[str]:
    def span(pair: tuple[float, float]) -> str:
        return f"{pair[0]:g}:{pair[1]:g}"

    command = [
        sys.executable,
        "-m",
        "orchestrator",
        "emulator",
        "--port",
        "0",
        "--seed",
        str(plan.seed),
        "--agent-delay",
        span(plan.agent_delay_s),
        "--talk-time",
        span(plan.talk_time_s),
        "--abandon-rate",
        str(plan.abandon_rate),
        "--max-concurrent-calls",
        str(plan.max_concurrent_calls),
        "--error-rate",
        str(plan.error_rate),
        "--drop-rate",
        str(plan.drop_rate),
        "--latency",
        span(plan.latency_ms),
    ]
    for operation, rate, burst in plan.quotas:
        command += ["--quota", f"{operation}={rate:g}/{burst:g}"]
    return command


@dataclass
class Child:
    """A process of ours, its output in a file."""

    name: str
    log_path: Path
    process: Process
    log_file: IO[bytes]
    started_at: float
    signalled: str | None = None
    exit_code: int | None = None
    closed: bool = False

    @classmethod
    async def start(
        cls, name: str, command: list[str], env: Mapping[str, str], log_path: Path
    ) -> Child:
        log_file = log_path.open("wb")
        process = await anyio.open_process(
            command, env=env, stdin=None, stdout=log_file, stderr=log_file
        )
        return cls(name, log_path, process, log_file, time.monotonic())

    def signal(self, which: signal.Signals) -> None:
        self.signalled = which.name
        self.process.send_signal(which)

    async def wait(self, timeout_s: float) -> int:
        with anyio.fail_after(timeout_s):
            self.exit_code = await self.process.wait()
        return self.exit_code

    async def close(self) -> None:
        """Make sure it is gone (SIGKILL if it is still running)."""
        if self.closed:
            return
        self.closed = True
        if self.process.returncode is None:
            self.process.kill()
            with contextlib.suppress(TimeoutError):
                await self.wait(10)
        self.exit_code = self.process.returncode
        await self.process.aclose()
        self.log_file.close()


async def start_emulator(plan: ChaosPlan, workdir: Path) -> tuple[Child, str]:
    child = await Child.start(
        "emulator", emulator_command(plan), dict(os.environ), workdir / "emulator.log"
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in child.log_path.read_text(errors="replace").splitlines():
            if line.startswith(EMULATOR_READY):
                return child, line.removeprefix(EMULATOR_READY).strip()
        if child.process.returncode is not None:
            break
        await anyio.sleep(0.05)
    await child.close()
    raise RuntimeError(f"the emulator did not start: {child.log_path.read_text()[-2000:]}")


_SQS_SERVER = """
import sys
from orchestrator.testing.local_sqs import LocalSqsServer
with LocalSqsServer() as server:
    print(server.url, flush=True)
    sys.stdin.read()
"""


@contextlib.asynccontextmanager
async def sqs_server_process(workdir: Path) -> AsyncIterator[str]:
    """moto's SQS server in a child process (its own core, its own GIL) until the block ends."""
    await anyio.Path(workdir).mkdir(parents=True, exist_ok=True)
    with (workdir / "sqs-server.log").open("wb") as errors:
        process = await anyio.open_process(
            [sys.executable, "-c", _SQS_SERVER], stdout=subprocess.PIPE, stderr=errors
        )
        try:
            assert process.stdout is not None
            with anyio.fail_after(30):
                line = b""
                async for chunk in process.stdout:
                    line += chunk
                    if b"\n" in line:
                        break
            yield line.decode().strip()
        finally:
            with anyio.CancelScope(shield=True):
                process.terminate()
                with anyio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                await process.aclose()


# -- reading the events queue -------------------------------------------------------------------


@dataclass
class EventLog:
    """Every event read from the events queue, as sent (duplicates included)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    finals: dict[str, set[str]] = field(default_factory=dict)
    #: Set (and replaced) whenever events arrive.
    changed: anyio.Event = field(default_factory=anyio.Event)

    def add(self, bodies: list[str]) -> None:
        for body in bodies:
            event = json.loads(body)
            self.events.append(event)
            if event.get("final"):
                self.finals.setdefault(event["request_id"], set()).add(event["type"])
        self.changed.set()
        self.changed = anyio.Event()

    async def next_arrival(self, *, within_s: float) -> None:
        """Until events next arrive, or `within_s` seconds."""
        with anyio.move_on_after(within_s):
            await self.changed.wait()

    async def wait_until(self, condition: Callable[[], bool], deadline: float) -> None:
        """Until `condition()` holds (checked as events arrive) or the monotonic `deadline`."""
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with anyio.move_on_after(remaining):
                await self.changed.wait()

    async def follow(self, sqs: SQSClient, queue_url: str) -> None:
        while True:
            await self.receive_once(sqs, queue_url, wait_s=1)

    async def receive_once(self, sqs: SQSClient, queue_url: str, *, wait_s: int) -> int:
        got = await sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s
        )
        messages = got.get("Messages", [])
        if messages:
            self.add([m.get("Body", "") for m in messages])
            await sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )
        return len(messages)

    async def sweep(self, sqs: SQSClient, queue_url: str) -> None:
        while await self.receive_once(sqs, queue_url, wait_s=0):
            pass


# -- the run --------------------------------------------------------------------------------------


@dataclass
class ChaosReport:
    plan: ChaosPlan
    valid: list[Planned]
    poison: list[Poison]
    events: list[dict[str, Any]] = field(default_factory=list)
    contacts: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    dead_letters: list[str] = field(default_factory=list)
    left_in_queue: tuple[int, int] = (0, 0)
    timeline: list[str] = field(default_factory=list)
    workers_started: int = 0
    kills: int = 0
    graceful_stops: int = 0
    #: (worker, signal sent or None, exit code)
    exits: list[tuple[str, str | None, int | None]] = field(default_factory=list)
    worker_logs: list[Path] = field(default_factory=list)
    drain_s: float = 0.0
    completed: bool = False
    problems: list[str] = field(default_factory=list)

    # -- figures -------------------------------------------------------------------------------

    def final_events(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for event in self.events:
            if event.get("final"):
                out.setdefault(event["request_id"], event)
        return out

    def outcomes(self) -> Counter[str]:
        valid = {v.request_id for v in self.valid}
        return Counter(
            outcome_of(event) for rid, event in self.final_events().items() if rid in valid
        )

    def redeliveries(self) -> int:
        """Valid requests' deliveries beyond the first that reached `request.received`."""
        received = Counter(e["request_id"] for e in self.events if e["type"] == "request.received")
        return sum(n - 1 for n in received.values())

    def duplicates(self) -> int:
        return len(self.events) - len({e["id"] for e in self.events})

    def operation_totals(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for op in self.stats.get("operations", {}).values():
            totals.update(op)
        return dict(totals)

    def render(self) -> str:
        totals = self.operation_totals()
        readable = sum(p.request_id is not None for p in self.poison)
        lines = [
            f"chaos soak, seed {self.plan.seed}: "
            + ("completed" if self.completed else "DID NOT COMPLETE"),
            f"  requests           {len(self.valid)} valid + {len(self.poison)} poison "
            f"({readable} with a readable RequestId)",
            f"  workers            {self.plan.workers} at a time, {self.workers_started} started, "
            f"{self.kills} SIGKILLed, {self.graceful_stops} SIGTERMed (graceful drain)",
            f"  time to drain      {self.drain_s:.1f} s",
            "  outcomes           "
            + ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes().items())),
            f"  redeliveries       {self.redeliveries()} (valid requests received again)",
            f"  events             {len(self.events)} read, "
            f"{len({e['id'] for e in self.events})} distinct ids, "
            f"{self.duplicates()} duplicates suppressed",
            f"  Connect calls      {totals.get('calls', 0)}: "
            f"{totals.get('throttled', 0) + totals.get('concurrency_limited', 0)} x 429 "
            f"({totals.get('concurrency_limited', 0)} at the concurrency cap), "
            f"{totals.get('faults', 0) - totals.get('dropped', 0)} x 5xx, "
            f"{totals.get('dropped', 0)} dropped connections",
            f"  contacts           {len(self.contacts)} in Connect, "
            f"{sum(c['ScreenSharingStarts'] for c in self.contacts)} screen-sharing starts",
            f"  dead-letter queue  {len(self.dead_letters)} message(s)",
        ]
        for operation, counts in sorted(self.stats.get("operations", {}).items()):
            lines.append(
                f"    {operation:<19}"
                + ", ".join(f"{k} {v}" for k, v in counts.items() if k != "calls")
                + f" (of {counts.get('calls', 0)})"
            )
        lines += [f"  chaos              {entry}" for entry in self.timeline]
        if self.problems:
            lines.append(f"  PROBLEMS ({len(self.problems)}):")
            lines += [f"    - {p}" for p in self.problems[:50]]
        return "\n".join(lines)


class _Run:
    """One chaos run in progress: the queues, the processes, the events read so far."""

    def __init__(self, plan: ChaosPlan, sqs: SQSClient, sqs_url: str, workdir: Path) -> None:
        self.plan = plan
        self.sqs = sqs
        self.sqs_url = sqs_url
        self.workdir = workdir
        self.rng = random.Random(plan.seed)
        valid = plan_requests(plan, self.rng)
        poison = [p for copy in range(plan.poison_sets) for p in poison_set(copy, plan.seed)]
        self.report = ChaosReport(plan, valid, poison)
        self.log = EventLog()
        self.children: list[Child] = []
        self.alive: list[Child] = []
        self.stopping: list[Child] = []
        self.env: dict[str, str] = {}
        self.queue = self.dlq = self.events_url = self.connect_url = ""
        #: (body, is a valid request) not sent yet, in the seeded order they are sent.
        self.to_send: list[tuple[str, bool]] = []
        self.sent_valid = 0
        self.started = time.monotonic()
        self.valid_ids = [v.request_id for v in valid]
        self.readable = {p.request_id for p in poison if p.request_id is not None}

    async def set_up(self) -> None:
        emulator, self.connect_url = await start_emulator(self.plan, self.workdir)
        self.children.append(emulator)
        self.queue, self.dlq = await create_queue_with_dlq(
            self.sqs, max_receive_count=self.plan.max_receive_count
        )
        name = f"chaos-ev-{uuid.uuid4().hex[:8]}"
        self.events_url = (await self.sqs.create_queue(QueueName=name))["QueueUrl"]
        self.to_send = [(v.body, True) for v in self.report.valid]
        self.to_send += [(p.body, False) for p in self.report.poison]
        self.rng.shuffle(self.to_send)
        if self.plan.backlog is None:
            await self.send(len(self.to_send))
        self.env = worker_env(
            self.plan,
            queue_url=self.queue,
            events_url=self.events_url,
            sqs_url=self.sqs_url,
            connect_url=self.connect_url,
        )

    async def send(self, count: int) -> int:
        """Send the next `count` messages; how many of them were valid requests."""
        batch, self.to_send = self.to_send[:count], self.to_send[count:]
        await send_all(self.sqs, self.queue, [body for body, _ in batch])
        valid = sum(is_valid for _, is_valid in batch)
        self.sent_valid += valid
        return valid

    async def feed(self) -> None:
        """Keep at most `plan.backlog` valid requests outstanding until everything is sent."""
        backlog = self.plan.backlog or len(self.to_send)
        while self.to_send:
            done = sum(rid in self.log.finals for rid in self.valid_ids)
            room = backlog - (self.sent_valid - done)
            if room > 0:
                await self.send(min(room, 50))
            else:
                await self.log.next_arrival(within_s=0.5)

    async def start_worker(self) -> Child:
        self.report.workers_started += 1
        name = f"worker-{self.report.workers_started}"
        command = [sys.executable, "-m", "orchestrator", "run"]
        child = await Child.start(name, command, self.env, self.workdir / f"{name}.log")
        self.children.append(child)
        self.alive.append(child)
        self.report.worker_logs.append(child.log_path)
        return child

    def progress(self) -> float:
        done = sum(rid in self.log.finals for rid in self.valid_ids)
        return done / max(1, len(self.valid_ids))

    def reached(self, share: float) -> bool:
        return self.progress() >= share

    async def complete(self) -> bool:
        if self.to_send or self.progress() < 1 or not self.readable <= set(self.log.finals):
            return False
        visible, hidden = await queue_counts(self.sqs, self.dlq)
        if visible + hidden < len(self.report.poison):
            return False
        return await queue_counts(self.sqs, self.queue) == (0, 0)

    async def strike(self, action: str) -> None:
        """SIGKILL or SIGTERM a running worker (chosen by the seeded schedule); replace it."""
        victim = self.rng.choice(self.alive)
        self.alive.remove(victim)
        at = f"{time.monotonic() - self.started:5.1f} s, {self.progress():4.0%} done"
        if action == "kill":
            victim.signal(signal.SIGKILL)
            self.report.kills += 1
        else:
            victim.signal(signal.SIGTERM)
            self.report.graceful_stops += 1
            self.stopping.append(victim)
        replacement = await self.start_worker()
        self.report.timeline.append(
            f"{at}: {victim.signalled} {victim.name} "
            f"(up {time.monotonic() - victim.started_at:.1f} s), started {replacement.name}"
        )

    async def drain_under_chaos(self) -> None:
        plan = self.plan
        self.started = time.monotonic()
        deadline = self.started + plan.deadline_s
        for _ in range(plan.workers):
            await self.start_worker()
        actions = ["kill"] * plan.kills + ["term"] * plan.graceful_stops
        self.rng.shuffle(actions)
        marks = sorted(self.rng.uniform(*plan.window) for _ in actions)
        for action, mark in zip(actions, marks, strict=True):
            await self.log.wait_until(functools.partial(self.reached, mark), deadline)
            await self.strike(action)
        while not await self.complete():
            if time.monotonic() > deadline:
                self.report.problems.append(f"did not drain within {plan.deadline_s:g} s")
                break
            await self.log.next_arrival(within_s=0.25)
        else:
            self.report.completed = True
        self.report.drain_s = time.monotonic() - self.started

    async def stop_workers(self) -> None:
        """SIGTERM the survivors; every SIGTERMed worker must exit, and cleanly."""
        for child in self.alive:
            child.signal(signal.SIGTERM)
            self.stopping.append(child)
        self.alive = []
        for child in self.stopping:
            try:
                await child.wait(self.plan.stop_timeout_s)
            except TimeoutError:
                self.report.problems.append(
                    f"{child.name} did not exit within {self.plan.stop_timeout_s:g} s"
                )

    async def collect(self) -> None:
        report = self.report
        await self.log.sweep(self.sqs, self.events_url)
        report.events = self.log.events
        report.contacts = await EmulatorControl(self.connect_url).contacts()
        report.stats = await EmulatorControl(self.connect_url).stats()
        report.dead_letters = await drain_bodies(self.sqs, self.dlq)
        report.left_in_queue = await queue_counts(self.sqs, self.queue)
        for child in self.children:
            if child.name.startswith("worker"):
                await child.close()
                report.exits.append((child.name, child.signalled, child.exit_code))

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            for child in self.children:
                await child.close()


async def run_chaos(plan: ChaosPlan, *, sqs_url: str, workdir: Path) -> ChaosReport:
    """Run `plan` against the SQS server at `sqs_url`; processes' logs go under `workdir`."""
    await anyio.Path(workdir).mkdir(parents=True, exist_ok=True)
    async with get_session().create_client("sqs", region_name=REGION, endpoint_url=sqs_url) as sqs:
        run = _Run(plan, sqs, sqs_url, workdir)
        try:
            await run.set_up()
            async with anyio.create_task_group() as tg:
                for _ in range(2):  # two readers keep up with several workers' events
                    tg.start_soon(run.log.follow, sqs, run.events_url)
                tg.start_soon(run.feed)
                await run.drain_under_chaos()
                tg.cancel_scope.cancel()
            await run.stop_workers()
            await run.collect()
        finally:
            await run.close()
    run.report.problems += check(run.report)
    return run.report


# -- the promises -------------------------------------------------------------------------------


def outcome_of(event: Mapping[str, Any]) -> str:
    """A final event's type, with the reason when screen sharing was skipped."""
    if event["type"] == "screen_sharing.skipped":
        return f"screen_sharing.skipped ({event['data'].get('reason')})"
    return str(event["type"])


def check(report: ChaosReport) -> list[str]:
    """Every way the run broke a promise (empty when it kept them all)."""
    problems: list[str] = []
    valid = {v.request_id: v for v in report.valid}
    poison_ids = {p.request_id for p in report.poison if p.request_id is not None}
    problems += _check_events(report, valid, poison_ids)
    problems += _check_contacts(report, valid, poison_ids)
    problems += _check_queues(report)
    problems += _check_workers(report)
    return problems


def _check_events(
    report: ChaosReport, valid: dict[str, Planned], poison_ids: set[str]
) -> list[str]:
    problems = []
    finals: dict[str, set[str]] = {}
    for event in report.events:
        rid, kind = event["request_id"], event["type"]
        if event["id"] != f"{rid}:{kind}":
            problems.append(f"event id {event['id']!r} is not RequestId:type")
        if event["final"] != (kind in FINALS):
            problems.append(f"{event['id']}: final={event['final']}")
        if rid not in valid and rid not in poison_ids:
            problems.append(f"an event for a request nobody sent: {event['id']}")
        if event["final"]:
            finals.setdefault(rid, set()).add(kind)
    problems += [
        f"{rid}: conflicting final events {sorted(kinds)}"
        for rid, kinds in finals.items()
        if len(kinds) > 1
    ]
    problems += [f"{rid}: no final event" for rid in valid if rid not in finals]
    for rid in poison_ids:
        kinds = {e["type"] for e in report.events if e["request_id"] == rid}
        if kinds != {"request.rejected"}:
            problems.append(f"poison {rid}: events {sorted(kinds)}, not just request.rejected")
    return problems + _check_outcomes(report, valid)


#: The final outcomes each kind of request may reach, besides those any request may.
_ALLOWED = {
    "share": {"screen_sharing.started", "screen_sharing.skipped (contact_ended)"},
    "declines": {"screen_sharing.skipped (not_requested)"},
    "not-allowed": {"screen_sharing.skipped (capability_not_allowed)"},
}
_ALWAYS = {"contact.disconnected", "contact.timed_out", "request.failed"}


def _check_outcomes(report: ChaosReport, valid: dict[str, Planned]) -> list[str]:
    """The final outcome agrees with what the request asked for."""
    problems = []
    for rid, event in report.final_events().items():
        if rid in valid and outcome_of(event) not in _ALLOWED[valid[rid].kind] | _ALWAYS:
            problems.append(f"{rid} ({valid[rid].kind}): final {outcome_of(event)}")
    return problems


def _check_contacts(
    report: ChaosReport, valid: dict[str, Planned], poison_ids: set[str]
) -> list[str]:
    problems = []
    by_token = {client_token(rid, "start"): rid for rid in valid}
    poison_tokens = {client_token(rid, "start") for rid in poison_ids}
    per_token = Counter(c["ClientToken"] for c in report.contacts)
    for token, count in per_token.items():
        if count > 1:
            problems.append(f"{by_token.get(token, token)}: {count} contacts for one request")
        if token in poison_tokens:
            problems.append(f"a rejected request reached Connect (token {token})")
        elif token not in by_token:
            problems.append(f"a contact for no request: token {token}")
    started: dict[str, set[str]] = {}
    for event in report.events:
        if event["type"] == "contact.started":
            started.setdefault(event["request_id"], set()).add(event["contact_id"])
    problems += [
        f"{rid}: contact.started but no contact in Connect"
        for rid in started
        if client_token(rid, "start") not in per_token
    ]
    finals = report.final_events()
    for contact in report.contacts:
        rid = by_token.get(contact["ClientToken"])
        if rid is None:
            continue
        ids = started.get(rid, set())
        if ids and ids != {contact["ContactId"]}:
            problems.append(f"{rid}: contact.started names {sorted(ids)}, Connect has one other")
        final = finals.get(rid, {}).get("type")
        problems += [f"{rid}: {p}" for p in _contact_problems(contact, valid[rid].kind, final)]
    return problems


def _contact_problems(contact: Mapping[str, Any], kind: str, final: str | None) -> list[str]:
    """Screen sharing only once, only where wanted, allowed and connected; finals that match."""
    problems = []
    starts = contact["ScreenSharingStarts"]
    connected = contact["ConnectedToAgentAt"]
    caps = contact["Request"].get("AllowedCapabilities") or {}
    may_share = all(
        (caps.get(side) or {}).get("ScreenShare") == "SEND" for side in ("Customer", "Agent")
    )
    if starts > 1:
        problems.append(f"screen sharing started {starts} times")
    if starts and (kind != "share" or not may_share):
        problems.append("screen sharing started though not wanted or allowed")
    shared = contact["ScreenSharingStartedAt"]
    if starts and (connected is None or shared is None or shared < connected):
        problems.append("screen sharing started before an agent connected")
    if starts and final == "screen_sharing.skipped":
        problems.append("final screen_sharing.skipped, yet sharing started")
    if not starts and final == "screen_sharing.started":
        problems.append("final screen_sharing.started, yet Connect never started it")
    if final == "contact.disconnected" and connected is not None:
        problems.append("final contact.disconnected, yet an agent connected")
    if final in {"screen_sharing.started", "screen_sharing.skipped"} and connected is None:
        problems.append(f"final {final} without an agent ever connecting")
    return problems


def _check_queues(report: ChaosReport) -> list[str]:
    problems = []
    if report.left_in_queue != (0, 0):
        problems.append(f"request queue not empty: (visible, in flight) = {report.left_in_queue}")
    expected = sorted(p.body for p in report.poison)
    if sorted(report.dead_letters) != expected:
        extra = Counter(report.dead_letters) - Counter(expected)
        missing = Counter(expected) - Counter(report.dead_letters)
        problems.append(
            f"dead-letter queue differs from the poison messages: "
            f"{sum(extra.values())} unexpected "
            f"({', '.join(b[:60] for b in extra)}), {sum(missing.values())} missing"
        )
    return problems


def _check_workers(report: ChaosReport) -> list[str]:
    problems = []
    for name, signalled, code in report.exits:
        if signalled == "SIGTERM" and code != 0:
            problems.append(f"{name}: exit status {code} after SIGTERM")
        if signalled is None:
            problems.append(f"{name}: was never stopped")
    secrets = [
        value
        for event in report.events
        if event["type"] == "contact.started"
        for value in _secret_values(event["data"])
    ]
    if not secrets:
        problems.append("no connection data in the events: the token check proves nothing")
    for path in report.worker_logs:
        text = path.read_text(errors="replace")
        lines = text.splitlines()
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError:
                if number == len(lines):  # a SIGKILL may cut the last line short
                    continue
                problems.append(f"{path.name}:{number}: not a JSON log line: {line[:120]}")
                continue
            if record.get("event") == "worker.unexpected_error":
                problems.append(f"{path.name}:{number}: {line[:200]}")
        leaked = [s for s in secrets if s in text]
        if leaked:
            problems.append(f"{path.name}: {len(leaked)} connection token(s) in the log")
    return problems


def _secret_values(data: Mapping[str, Any]) -> Iterator[str]:
    if isinstance(data.get("ParticipantToken"), str):
        yield data["ParticipantToken"]
    attendee = (data.get("ConnectionData") or {}).get("Attendee") or {}
    if isinstance(attendee.get("JoinToken"), str):
        yield attendee["JoinToken"]
