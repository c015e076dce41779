"""`orchestrator demo`: the whole job on an embedded default, no AWS account needed.

In one process: the Connect emulator and an SQS server on loopback, a request queue with a
dead-letter queue, an events queue playing the requester's inbox, and the real worker. The demo
enqueues a realistic mix of requests, follows the events queue the way a requester's backend would,
stops the worker once every request has its final event, and prints a summary taken from the
worker's metrics and the emulator's ground truth.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio
from aiobotocore.session import AioSession

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.logs import configure_logging
from orchestrator.daemon.settings import Settings
from orchestrator.daemon.sqs import sqs_client_config
from orchestrator.metrics import Metrics
from orchestrator.testing.emulator import Emulator, EmulatorConfig, EmulatorControl
from orchestrator.testing.local_sqs import LocalSqsServer

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

REGION = "us-east-1"
INSTANCE_ID = "8f3a1c2e-0d4b-4e6f-9a7c-1b2d3e4f5a6b"
FLOW_ID = "c0ffee00-1234-4abc-8def-0123456789ab"
_NAMES = ["Ana", "Ben", "Chloé", "Dmitri", "Emeka", "Fatima", "Goro", "Hana", "Ines", "José"]


def sample_requests(count: int) -> list[str]:
    """`count` message bodies: mostly ordinary calls, one refusing screen sharing capability, one
    that does not ask for screen sharing, and one invalid message."""
    bodies: list[str] = []
    for i in range(count):
        body: dict[str, Any] = {
            "RequestId": f"demo-{i:03d}",
            "InstanceId": INSTANCE_ID,
            "ContactFlowId": FLOW_ID,
            "ParticipantDetails": {"DisplayName": _NAMES[i % len(_NAMES)]},
            "Attributes": {"order": f"{10_000 + i}", "channel": "mobile-app"},
            "AllowedCapabilities": {
                "Customer": {"Video": "SEND", "ScreenShare": "SEND"},
                "Agent": {"Video": "SEND", "ScreenShare": "SEND"},
            },
        }
        if i == 1:
            body["AllowedCapabilities"]["Agent"] = {"Video": "SEND"}  # screen sharing not allowed
        elif i == 2:
            body["ScreenSharing"] = False
        elif i == 3:
            body = {  # invalid: empty name, bad attribute key
                "RequestId": "demo-003-invalid",
                "ParticipantDetails": {"DisplayName": ""},
                "Attributes": {"order id": "10003"},
            }
        bodies.append(json.dumps(body))
    return bodies


@dataclass
class DemoResult:
    requests: int
    finals: dict[str, str] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    dead_letters: int = 0
    elapsed_s: float = 0.0
    emulator_stats: dict[str, Any] = field(default_factory=dict)
    completed: bool = False


async def _create_queues(sqs: SQSClient, run_id: str) -> tuple[str, str, str]:
    dlq = (await sqs.create_queue(QueueName=f"demo-{run_id}-requests-dlq"))["QueueUrl"]
    dlq_arn = (await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))[
        "Attributes"
    ]["QueueArn"]
    requests = (
        await sqs.create_queue(
            QueueName=f"demo-{run_id}-requests",
            Attributes={
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
            },
        )
    )["QueueUrl"]
    events = (await sqs.create_queue(QueueName=f"demo-{run_id}-events"))["QueueUrl"]
    return requests, dlq, events


class _Printer:
    def __init__(self, out: TextIO, started: float, total: int) -> None:
        self.out = out
        self.started = started
        self.total = total
        self.done = 0

    def event(self, record: dict[str, Any]) -> None:
        kind = record["type"]
        data = record.get("data", {})
        detail = ""
        if kind == "contact.started":
            meeting = data.get("ConnectionData", {}).get("Meeting", {}).get("MeetingId", "?")
            has_token = "ParticipantToken" in data
            detail = f"contact {record['contact_id'][:8]}, meeting {meeting[:8]}" + (
                ", join data delivered" if has_token else ""
            )
        elif kind == "contact.agent_connected":
            detail = f"after {data.get('waited_s')} s in queue, {data.get('polls')} polls"
        elif kind == "screen_sharing.skipped":
            detail = str(data.get("reason"))
        elif kind == "request.rejected":
            detail = "; ".join(f"{e['field']}: {e['message']}" for e in data.get("errors", []))
        elif kind == "request.failed":
            detail = f"{data.get('error_code')}: {data.get('message')}"
        if record.get("final"):
            self.done += 1
        marker = f"[{self.done:>2}/{self.total}]" if record.get("final") else " " * 7
        t = time.monotonic() - self.started
        self.out.write(f"{t:6.1f}s {marker} {record['request_id']:<18} {kind:<24} {detail}\n")
        self.out.flush()


async def _follow_events(
    sqs: SQSClient, events_url: str, result: DemoResult, printer: _Printer
) -> None:
    """Read the events queue like the requester's backend would."""
    while True:
        got = await sqs.receive_message(
            QueueUrl=events_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        messages = got.get("Messages", [])
        for message in messages:
            record = json.loads(message["Body"])
            if record["id"] not in result.events:
                result.events[record["id"]] = record
                printer.event(record)
                if record["final"]:
                    result.finals[record["request_id"]] = record["type"]
        if messages:
            await sqs.delete_message_batch(
                QueueUrl=events_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )


async def _dead_letters(sqs: SQSClient, dlq_url: str) -> int:
    attrs = await sqs.get_queue_attributes(
        QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


async def run_demo(
    requests: int = 20,
    *,
    out: TextIO,
    seed: int = 7,
    timeout_s: float = 120.0,
    log_path: Path | None = None,
) -> DemoResult:
    """Run the demo; returns what happened (`completed` is False on timeout)."""
    log_file = log_path or Path(tempfile.mkdtemp(prefix="orchestrator-demo-")) / "worker.log"
    with log_file.open("w", encoding="utf-8") as log_stream:
        configure_logging(level="INFO", json_output=True, stream=log_stream)
        result = await _run(requests, out=out, seed=seed, timeout_s=timeout_s)
    out.write(f"\nStructured worker logs: {log_file}\n")
    return result


async def _run(requests: int, *, out: TextIO, seed: int, timeout_s: float) -> DemoResult:
    session = AioSession()
    # The local servers accept any signature; these keys exist only for this process.
    session.set_credentials("AKIADEMO000000000000", "demo-secret-not-a-real-key")
    result = DemoResult(requests=requests)
    bodies = sample_requests(requests)
    emulator_config = EmulatorConfig(
        instance_ids=frozenset({INSTANCE_ID}),
        contact_flow_ids=frozenset({FLOW_ID}),
        agent_delay_s=(1.0, 6.0),
        abandon_rate=0.1,
        talk_time_s=(2.0, 6.0),
        max_concurrent_calls=10,
        seed=seed,
    )
    with LocalSqsServer() as sqs_server:
        async with (
            Emulator(emulator_config) as emulator,
            session.create_client(
                "sqs", region_name=REGION, endpoint_url=sqs_server.url, config=sqs_client_config()
            ) as sqs,
        ):
            run_id = uuid.uuid4().hex[:8]
            requests_url, dlq_url, events_url = await _create_queues(sqs, run_id)
            settings = Settings(
                aws={"region": REGION, "endpoint_url": sqs_server.url},
                queue={
                    "url": requests_url,
                    "wait_time_s": 1,
                    "visibility_timeout_s": 30,
                    "max_in_flight": 100,
                    "retry_base_delay_s": 1,
                },
                connect={
                    "endpoint_url": emulator.url,
                    "instance_id": INSTANCE_ID,
                    "contact_flow_id": FLOW_ID,
                    "capacity_max_wait_s": 90,
                },
                watch={
                    "first_delay_s": 0.5,
                    "multiplier": 1.5,
                    "max_interval_s": 2,
                    "max_wait_s": 45,
                },
                events={"sqs_queue_url": events_url, "include_connection_data": True},
                shutdown={"grace_period_s": 5},
                observability={"enabled": False},
            )
            out.write(
                f"Connect emulator {emulator.url}, SQS {sqs_server.url}\n"
                f"Enqueuing {requests} call requests (one invalid, one without the "
                "screen-sharing capability, one not asking for it)\n\n"
            )
            for start in range(0, len(bodies), 10):
                await sqs.send_message_batch(
                    QueueUrl=requests_url,
                    Entries=[
                        {"Id": str(i), "MessageBody": b}
                        for i, b in enumerate(bodies[start : start + 10])
                    ],
                )
            started = time.monotonic()
            printer = _Printer(out, started, requests)
            metrics = Metrics()
            async with (
                open_worker(settings, session=session, metrics=metrics) as worker,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(_follow_events, sqs, events_url, result, printer)

                async def supervise() -> None:
                    deadline = time.monotonic() + timeout_s
                    while time.monotonic() < deadline:
                        result.dead_letters = await _dead_letters(sqs, dlq_url)
                        if len(result.finals) >= requests and result.dead_letters >= 1:
                            result.completed = True
                            break
                        await anyio.sleep(0.2)
                    worker.stop()

                tg.start_soon(supervise)
                await worker.run()
                tg.cancel_scope.cancel()
            result.elapsed_s = time.monotonic() - started
            result.emulator_stats = await EmulatorControl(emulator.url).stats()
            _summary(out, result, metrics)
    return result


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


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
    status = "" if result.completed else " (TIMED OUT before every request finished)"
    lines = [
        "",
        f"Summary{status}",
        f"  requests                  {result.requests} in {result.elapsed_s:.1f} s",
        *(f"    {outcome:<24}{count}" for outcome, count in sorted(outcomes.items())),
        f"  time to agent             median {median_wait:.1f} s, "
        f"p95 {_percentile(waits, 0.95):.1f} s (Connect's timestamps)",
        f"  polls per contact         mean {mean_polls:.1f}, max {max(polls, default=0)}",
        "  Connect calls (worker)    "
        + ", ".join(f"{lb['operation']} {lb['result']}={int(v)}" for lb, v in calls),
        "  throttled (emulator 429s) "
        + ", ".join(f"{op} {s['throttled']}" for op, s in sorted(ops.items())),
        "  concurrency cap hits      "
        + str(ops.get("StartWebRTCContact", {}).get("concurrency_limited", 0)),
        f"  messages                  received {received}, acknowledged {acknowledged}, "
        f"handed back {int(handed_back)}",
        f"  dead-letter queue         {result.dead_letters} message(s) (the invalid request)",
        f"  distinct events received  {len(result.events)} on the events queue",
    ]
    out.write("\n".join(lines) + "\n")
