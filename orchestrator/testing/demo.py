"""`orchestrator demo`: the whole job on an embedded default, no AWS account needed.

In one process: the Connect emulator and an SQS server on loopback, a request queue with a
dead-letter queue, a queue for the lifecycle events, and the real worker. The requester is a
backend using `orchestrator.client`: it submits a realistic mix of requests through a `CallClient`
(one invalid message goes in raw, as a producer that skips validation would send it) and follows
each call's events on its handle, as they reach the client's reply queue; the demo prints each one
(waiting customers' places in line counting down among them), and, from the worker's log records
and metrics, when a request waits for the start rate or for call capacity. It stops the worker
once every request has its final event,
prints a summary taken from the worker's metrics and the emulator's ground truth, and keeps the
worker's log in a file whose path it prints. One customer cancels while queued, and one contact
never gets an agent (held by the emulator from its start) and is stopped at its deadline; the
summary shows both, and the ground truth that no agent reached a contact after the orchestrator
let go of it and that no stop cut off an agent.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

import anyio
from aiobotocore.session import AioSession

from orchestrator.client import Call, CallClient
from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.logs import configure_logging
from orchestrator.daemon.settings import Settings
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.request import client_token
from orchestrator.metrics import Metrics
from orchestrator.sqs import aws_client_config
from orchestrator.testing.demo_stream import LogTap, Printer, Waits, plural, seconds
from orchestrator.testing.emulator import ControlError, Emulator, EmulatorConfig, EmulatorControl
from orchestrator.testing.ground_truth import cut_off, reached_agent_after_let_go
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.queues import (
    create_queue,
    create_queue_with_dlq,
    queue_counts,
)
from orchestrator.testing.requests import (
    FLOW_ID,
    INSTANCE_ID,
    REGION,
    request_document,
)

#: The requests whose outcome the demo announces: an agent picks them up at once (see
#: `_AgentPicksUp`), so that the emulator's seeded abandons cannot hide their outcome.
NOT_ALLOWED = "demo-001"
NOT_REQUESTED = "demo-002"
INVALID = "demo-003-invalid"
#: Held from every agent: the customer cancels once the contact is queued; the other one waits
#: until `[watch] max_wait_s` and is stopped.
CANCELS = "demo-004"
NEVER_ANSWERED = "demo-005"
_ANNOUNCED = {
    NOT_ALLOWED: "agent may not share a screen",
    NOT_REQUESTED: "does not ask for sharing",
    INVALID: "invalid",
    CANCELS: "customer cancels while queued",
    NEVER_ANSWERED: "no agent ever answers",
}
#: The requester's reply queues (the client's prefix), which the demo's worker allows.
REPLY_PREFIX = "demo-replies"
_NAMES = ["Ana", "Ben", "Chloé", "Dmitri", "Emeka", "Fatima", "Goro", "Hana", "Ines", "José"]


def sample_requests(count: int) -> list[str]:
    """`count` message bodies: mostly ordinary calls, one whose agent may not share a screen, one
    that does not ask for screen sharing, and one invalid message."""
    bodies: list[str] = []
    for i in range(count):
        body = request_document(
            f"demo-{i:03d}",
            ParticipantDetails={"DisplayName": _NAMES[i % len(_NAMES)]},
            Attributes={"order": f"{10_000 + i}", "channel": "mobile-app"},
        )
        if body["RequestId"] == NOT_ALLOWED:
            body["AllowedCapabilities"]["Agent"] = {"Video": "SEND"}
        elif body["RequestId"] == NOT_REQUESTED:
            body["ScreenSharing"] = False
        elif i == 3:
            body = {  # invalid: empty name, bad attribute key
                "RequestId": INVALID,
                "ParticipantDetails": {"DisplayName": ""},
                "Attributes": {"order id": "10003"},
            }
        bodies.append(json.dumps(body))
    return bodies


class _AgentPicksUp:
    """An event sink that has an agent pick up the given requests' contacts as soon as they
    start (through the emulator's control API), before the customer could hang up."""

    name = "demo-agent"

    def __init__(self, control: EmulatorControl, request_ids: set[str]) -> None:
        self.control = control
        self.request_ids = request_ids

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        for event in events:
            if (
                event.type is EventType.STARTED
                and event.request_id in self.request_ids
                and event.contact_id is not None
            ):
                with contextlib.suppress(ControlError):  # already answered (a redelivery)
                    await self.control.connect_agent(event.contact_id)


class _Customers:
    """An event sink playing the customer of `CANCELS`, who closes the app once the contact has
    started: the backend cancels the call through its client (`client`, set once the client is
    open). Its contact and `NEVER_ANSWERED`'s are held from every agent from their start (the
    emulator's `held_client_tokens`)."""

    name = "demo-customers"

    def __init__(self) -> None:
        self.client: CallClient | None = None

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        for event in events:
            mine = event.type is EventType.STARTED and event.request_id == CANCELS
            if mine and self.client is not None:
                await self.client.cancel(CANCELS, event.contact_id, event.instance_id)


@dataclass
class DemoResult:
    requests: int
    #: Each request's outcome: its final event type, with the reason when screen sharing was
    #: skipped.
    finals: dict[str, str] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    dead_letters: int = 0
    elapsed_s: float = 0.0
    emulator_stats: dict[str, Any] = field(default_factory=dict)
    completed: bool = False
    #: Requests that waited between receive and start: for "the start rate" or "call capacity".
    waited: dict[str, str] = field(default_factory=dict)
    #: Where the worker's JSON log was kept.
    log_path: Path | None = None
    #: Ground truth: contacts an agent reached after the orchestrator let go of them (must be
    #: empty), contacts stopped while an agent had them, and of those the ones stopped after a
    #: DescribeContact had shown the agent (must be empty; the others are the race between the
    #: confirmation and the stop, `ground_truth.cut_off`).
    reached_after_let_go: list[str] = field(default_factory=list)
    stopped_with_agent: list[str] = field(default_factory=list)
    stopped_after_agent_seen: list[str] = field(default_factory=list)


def _outcome(record: dict[str, Any]) -> str:
    data = record["data"]
    if record["type"] == "screen_sharing.skipped":
        return f"screen_sharing.skipped ({data.get('reason')})"
    if record["type"] == "request.cancelled":
        return f"request.cancelled ({data.get('stage')})"
    if data.get("contact_stopped"):
        return f"{record['type']} (contact stopped)"
    return str(record["type"])


async def run_demo(
    requests: int = 20,
    *,
    out: TextIO,
    seed: int = 7,
    timeout_s: float = 120.0,
    log_path: Path | None = None,
) -> DemoResult:
    """Run the demo; returns what happened (`completed` is False on timeout).

    The worker's JSON log is written to `log_path`, or to `worker.log` in a new temporary
    folder that the demo keeps; its path is printed at the end.
    """
    if log_path is None:
        log_path = Path(tempfile.mkdtemp(prefix="orchestrator-demo-")) / "worker.log"
    result = DemoResult(requests=requests, log_path=log_path)
    with log_path.open("w", encoding="utf-8") as log_file:
        await _run(result, out=out, seed=seed, timeout_s=timeout_s, log_file=log_file)
    names: Counter[str] = Counter()
    for line in log_path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            names[str(json.loads(line).get("event"))] += 1
    top = ", ".join(f"{name} {n}" for name, n in names.most_common(4))
    out.write(f"\nWorker log: {log_path}\n  {plural(names.total(), 'JSON line')} ({top}, ...)\n")
    return result


def _emulator_config(seed: int, contact_events_url: str, sqs_url: str) -> EmulatorConfig:
    # Connect's contact events (EventBridge -> SQS in AWS): the emulator publishes them, losing
    # some on purpose, so the summary shows both ways of noticing an agent.
    # The contact-center model: one queue, a few agents, another application's contacts waiting
    # ahead too, so that waiting customers hear their place in line count down.
    return EmulatorConfig(
        instance_ids=frozenset({INSTANCE_ID}),
        contact_flow_ids=frozenset({FLOW_ID}),
        agents=3,
        handle_time_s=(3.0, 7.0),
        patience_s=(20.0, 120.0),
        background_contacts=5,
        talk_time_s=(6.0, 12.0),
        max_concurrent_calls=10,
        seed=seed,
        events_queue_url=contact_events_url,
        events_endpoint_url=sqs_url,
        events_drop_rate=0.1,
        events_delay_s=(0.05, 0.3),
        held_client_tokens=frozenset(client_token(r, "start") for r in (CANCELS, NEVER_ANSWERED)),
    )


def _setup(config: EmulatorConfig) -> str:
    """The emulated contact center, as the demo's first lines state it."""
    quotas = ", ".join(f"{op} {q.rate:g}/s burst {q.burst:g}" for op, q in config.quotas.items())
    low, high = config.handle_time_s
    patience = "-".join(f"{p:g}" for p in config.patience_s)
    return (
        f"Emulated contact center (seed {config.seed}): Connect's quotas ({quotas}), at most "
        f"{config.max_concurrent_calls} concurrent calls; one queue served by {config.agents} "
        f"agents ({low:g}-{high:g} s a call), {config.background_contacts} contacts of another "
        f"application there first, customers who hang up after {patience} s in queue; Connect "
        f"contact events published with {config.events_drop_rate:.0%} lost on purpose.\n"
    )


async def _run(
    result: DemoResult, *, out: TextIO, seed: int, timeout_s: float, log_file: TextIO
) -> None:
    session = AioSession()
    # The local servers accept any signature; these keys exist only for this process.
    session.set_credentials("AKIADEMO000000000000", "demo-secret-not-a-real-key")
    bodies = sample_requests(result.requests)
    with LocalSqsServer() as sqs_server:
        async with session.create_client(
            "sqs", region_name=REGION, endpoint_url=sqs_server.url, config=aws_client_config()
        ) as sqs:
            requests_url, dlq_url = await create_queue_with_dlq(
                sqs, max_receive_count=2, prefix="demo-requests"
            )
            events_url = await create_queue(sqs, "demo-events")
            contact_events_url = await create_queue(sqs, "demo-contact-events")
            emulator_config = _emulator_config(seed, contact_events_url, sqs_server.url)
            async with Emulator(emulator_config) as emulator:
                out.write(
                    f"Connect emulator {emulator.url}, SQS {sqs_server.url}\n"
                    + _setup(emulator_config)
                )
                await _demo(
                    result,
                    session=session,
                    sqs=sqs,
                    sqs_url=sqs_server.url,
                    emulator=emulator,
                    queues=(requests_url, dlq_url, events_url, contact_events_url),
                    bodies=bodies,
                    out=out,
                    timeout_s=timeout_s,
                    log_file=log_file,
                )


def _settings(queues: tuple[str, str, str, str], sqs_url: str, emulator_url: str) -> Settings:
    """The demo worker's settings: short waits, so that it all happens within a minute."""
    requests_url, _, events_url, contact_events_url = queues
    return Settings(
        aws={"region": REGION, "endpoint_url": sqs_url},
        queue={
            "url": requests_url,
            "wait_time_s": 1,
            "visibility_timeout_s": 30,
            "max_in_flight": 100,
            "retry_base_delay_s": 1,
        },
        connect={
            "endpoint_url": emulator_url,
            "instance_id": INSTANCE_ID,
            "contact_flow_id": FLOW_ID,
            "capacity_max_wait_s": 90,
        },
        watch={
            "first_delay_s": 0.5,
            "multiplier": 1.5,
            "max_interval_s": 2,
            "max_wait_s": 25,
        },
        events={
            "sqs_queue_url": events_url,
            "include_connection_data": True,
            "reply_to_allowed": [f"arn:aws:sqs:{REGION}:*:{REPLY_PREFIX}-*"],
        },
        contact_events={"queue_url": contact_events_url},
        shutdown={"grace_period_s": 5},
        observability={"enabled": False},
    )


def _intro(out: TextIO, requests: int, settings: Settings) -> None:
    out.write(
        f"Enqueuing {requests} call requests: one invalid ({INVALID}), one whose agent may "
        f"not share a screen ({NOT_ALLOWED}), one not asking for screen sharing "
        f"({NOT_REQUESTED}); an agent picks up those two at once. No agent ever gets "
        f"{CANCELS} (whose customer cancels while queued) or {NEVER_ANSWERED} (stopped at "
        f"[watch] max_wait_s = {settings.watch.max_wait_s:g} s).\n"
        "Each line is a lifecycle event as the requester's client receives it, or (worker) what "
        "the worker's log tells: the capacity gate, and how long a request waited for the start "
        "rate or for call capacity.\n\n"
    )


async def _demo(
    result: DemoResult,
    *,
    session: AioSession,
    sqs: Any,
    sqs_url: str,
    emulator: Emulator,
    queues: tuple[str, str, str, str],
    bodies: list[str],
    out: TextIO,
    timeout_s: float,
    log_file: TextIO,
) -> None:
    requests, (requests_url, dlq_url, _, _) = result.requests, queues
    settings = _settings(queues, sqs_url, emulator.url)
    _intro(out, requests, settings)
    started = time.monotonic()
    printer = Printer(out, started, requests)
    c = settings.connect
    waits = Waits(
        printer,
        result.waited,
        rate_per_s=c.start_webrtc_contact_rate,
        burst=c.start_webrtc_contact_burst,
    )
    tap = cast("TextIO", LogTap(log_file, waits.record))  # write() and flush() are all it needs
    configure_logging(level="INFO", json_output=True, stream=tap)

    arrived = anyio.Event()

    async def follow(call: Call) -> None:
        """What the requester's backend does with each call: follow it to its final event."""
        nonlocal arrived
        async for event in call.events():
            record = event.model_dump(mode="json")
            result.events[record["id"]] = record
            printer.event(record)
            if record["final"]:
                result.finals[record["request_id"]] = _outcome(record)
            arrived.set()
            arrived = anyio.Event()

    metrics = Metrics()
    control = EmulatorControl(emulator.url)
    customers = _Customers()
    async with (
        open_worker(
            settings,
            session=session,
            metrics=metrics,
            extra_sinks=[
                _AgentPicksUp(control, {NOT_ALLOWED, NOT_REQUESTED}),
                customers,
            ],
        ) as worker,
        CallClient(
            requests_url,
            region=REGION,
            endpoint_url=sqs_url,
            session=session,
            reply_queue_prefix=REPLY_PREFIX,
            wait_time_s=1,
        ) as client,
        anyio.create_task_group() as tg,
    ):
        customers.client = client
        for body in bodies:
            document = json.loads(body)
            if document["RequestId"] == INVALID:
                # A producer that skips validation: `submit` would refuse it (RequestRejected).
                document["ReplyTo"] = client.reply_queue_url
                await sqs.send_message(QueueUrl=requests_url, MessageBody=json.dumps(document))
                call = client.call(INVALID)
            else:
                call = await client.submit(document)
            tg.start_soon(follow, call)

        async def done() -> bool:
            result.dead_letters = (await queue_counts(sqs, dlq_url))[0]
            return len(result.finals) >= requests and result.dead_letters >= 1

        async def supervise() -> None:
            deadline = time.monotonic() + timeout_s
            while not await done() and time.monotonic() < deadline:
                with anyio.move_on_after(0.5):
                    await arrived.wait()
            result.completed = await done()
            worker.stop()

        tg.start_soon(supervise)
        await worker.run()
        tg.cancel_scope.cancel()
    result.elapsed_s = time.monotonic() - started
    await _ground_truth(result, control)
    _summary(out, result, metrics)


async def _ground_truth(result: DemoResult, control: EmulatorControl) -> None:
    """What the emulator saw: its counts, and whether any agent met a contact let go of."""
    result.emulator_stats = await control.stats()
    contacts = await control.contacts()
    result.reached_after_let_go = reached_agent_after_let_go(result.events.values(), contacts)
    cuts = cut_off(contacts)
    result.stopped_with_agent = [c.contact_id for c in cuts]
    result.stopped_after_agent_seen = [c.contact_id for c in cuts if c.seen_before_stop]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _noticed(metrics: Metrics) -> str:
    """How each agent connection was noticed: woken by a Connect contact event, or by polling."""
    ways = {"event": "by a Connect contact event", "poll": "by polling"}
    parts = []
    for labels, count in metrics.samples("orchestrator_agent_detection_delay_seconds_count"):
        total = metrics.value("orchestrator_agent_detection_delay_seconds_sum", labels)
        mean = total / count if count else 0.0
        way = ways.get(labels["via"], labels["via"])
        parts.append(f"{way} {int(count)} (mean {seconds(mean)} after the agent)")
    read = int(sum(v for _, v in metrics.samples("orchestrator_contact_events_received_total")))
    return ", ".join(sorted(parts) or ["none"]) + f"; {plural(read, 'Connect contact event')} read"


def _positions(result: DemoResult) -> str:
    """How many contact.queue_position events went out, to how many requests, how many inferred."""
    told = [r for r in result.events.values() if r["type"] == "contact.queue_position"]
    inferred = sum(1 for r in told if r["data"].get("source") == "inferred")
    requests = len({r["request_id"] for r in told})
    return (
        f"{plural(len(told), 'contact.queue_position event')} to "
        f"{plural(requests, 'waiting customer')} ({inferred} inferred between GetContactMetrics "
        "calls)"
    )


def _let_go(metrics: Metrics) -> str:
    """The contacts the worker let go of (why, what it did), and the cancels it received."""

    def counts(metric: str, *keys: str) -> str:
        samples = metrics.samples(metric)
        return (
            ", ".join(sorted(" ".join(lb[k] for k in keys) + f" {int(v)}" for lb, v in samples))
            or "none"
        )

    stopped = counts("orchestrator_contacts_stopped_total", "reason", "result")
    return f"{stopped}; cancels {counts('orchestrator_cancels_total', 'result')}"


def _summary(out: TextIO, result: DemoResult, metrics: Metrics) -> None:
    outcomes = Counter(result.finals.values())
    waits = [
        float(r["data"]["waited_s"])
        for r in result.events.values()
        if r["type"] == "contact.agent_connected" and r["data"].get("waited_s") is not None
    ]
    polls = [
        int(r["data"]["polls"])
        for r in result.events.values()
        if r["data"].get("polls") is not None and r["type"] != "screen_sharing.skipped"
    ]
    ops = result.emulator_stats.get("operations", {})
    median_wait = statistics.median(waits) if waits else float("nan")
    mean_polls = statistics.fmean(polls) if polls else 0.0
    calls = sorted(
        metrics.samples("orchestrator_connect_calls_total"),
        key=lambda sample: (sample[0]["operation"], sample[0]["result"]),
    )
    handed_back = sum(v for _, v in metrics.samples("orchestrator_messages_handed_back_total"))
    received = int(metrics.value("orchestrator_messages_received_total"))
    acknowledged = int(metrics.value("orchestrator_messages_acknowledged_total"))
    waited = Counter(result.waited.values())
    status = "" if result.completed else " (TIMED OUT before every request finished)"
    lines = [
        "",
        f"Summary{status}",
        f"  requests                  {result.requests} in {seconds(result.elapsed_s)}",
        *(f"    {outcome:<48}{count}" for outcome, count in sorted(outcomes.items())),
        "  announced cases",
        *(
            f"    {rid:<18}{case:<30}{result.finals.get(rid, 'NO OUTCOME')}"
            for rid, case in _ANNOUNCED.items()
        ),
        f"  waited to start           {plural(waited['the start rate'], 'request')} for the "
        f"start rate, {plural(waited['call capacity'], 'request')} for call capacity",
        f"  time to agent             median {seconds(median_wait)}, "
        f"p95 {seconds(_percentile(waits, 0.95))} (Connect's timestamps)",
        f"  polls per contact         mean {mean_polls:.1f}, max {max(polls, default=0)}",
        "  Connect calls (worker)    "
        + ", ".join(f"{lb['operation']} {lb['result']} {int(v)}" for lb, v in calls),
        "  throttled (emulator 429s) "
        + ", ".join(f"{op} {s['throttled']}" for op, s in sorted(ops.items())),
        "  concurrent-call cap hits  "
        + str(ops.get("StartWebRTCContact", {}).get("concurrency_limited", 0)),
        f"  messages                  received {received}, acknowledged {acknowledged}, "
        f"handed back {int(handed_back)}",
        f"  dead-letter queue         {plural(result.dead_letters, 'message')} "
        "(the invalid request)",
        f"  lifecycle events          {len(result.events)} distinct, through the requester's "
        "client",
        "  places in line told       " + _positions(result),
        "  agent connection noticed  " + _noticed(metrics),
        "  contacts let go of        " + _let_go(metrics),
        f"  ground truth              {len(result.reached_after_let_go)} contacts reached an "
        f"agent after the orchestrator let go, {len(result.stopped_with_agent)} stopped while "
        f"an agent had them ({len(result.stopped_after_agent_seen)} after a DescribeContact "
        "showed the agent)",
    ]
    out.write("\n".join(lines) + "\n")
