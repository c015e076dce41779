"""The producer's side: submit -> connection data in the client's hands.

`python -m bench client`. One worker process (`orchestrator run`) that allows the clients' reply
queues, the emulator and the local SQS server in processes of their own; StartWebRTCContact,
DescribeContact and StartScreenSharing quotas raised and the concurrent-call cap lifted, so that
only the path is measured, not Connect's limits. The emulator answers every call after an added
latency (`--latency`), as Connect would; its StartWebRTCContact latency is measured in the same
run (that many calls made straight to it) and reported beside the client's figures.

* idle: one producer process (`orchestrator.testing.producer`) submits its calls one at a time,
  each awaited to its `contact.started` (and its outcome) before the next;
* loaded: three producer processes submit `loaded_calls` calls between them, all at once.

Submit -> connection data is the time from `CallClient.submit` to `contact.started` with the
ParticipantToken and ConnectionData in the producer's hands: the request through SQS, the worker's
receive and start call (`request.received` delivered meanwhile), the event to the reply queue (at
the same time as to the configured sinks) and the client's long poll.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from aiobotocore.session import get_session

from orchestrator.connect.gateway import connect_client_config
from orchestrator.connect.operations import Operation
from orchestrator.testing.processes import run_child, sqs_server_process
from orchestrator.testing.queues import create_queue
from orchestrator.testing.requests import REGION
from orchestrator.testing.stats import distribution
from orchestrator.testing.waiting import eventually
from orchestrator.testing.workers import BRISK, worker_rig

from .center import RAISED
from .harness import RunContext, Scenario, Target, fmt, request_params, run_all, say, table, verdict

#: The target: p95 of submit -> connection data at most this much over the emulator's own p95.
TARGET_OVERHEAD_S = 0.100
QUOTAS = {op.value: (RAISED, RAISED) for op in Operation}


@dataclass(frozen=True)
class ClientOptions:
    idle_calls: int = 100
    loaded_calls: int = 200
    producers: int = 3
    #: The emulator's added latency per request, milliseconds (MIN:MAX).
    latency_ms: str = "20:60"
    agent_delay: str = "0.5:1.5"


QUICK = ClientOptions(idle_calls=12, loaded_calls=30)


async def emulator_latency(url: str, calls: int) -> list[float]:
    """Seconds per StartWebRTCContact made straight to the emulator, one at a time."""
    seconds = []
    async with get_session().create_client(
        "connect", region_name=REGION, endpoint_url=url, config=connect_client_config()
    ) as connect:
        for index in range(calls):
            params = {**request_params(90_000 + index), "ClientToken": str(uuid.uuid4())}
            began = time.perf_counter()
            await connect.start_web_rtc_contact(**params)
            seconds.append(time.perf_counter() - began)
    return seconds


async def sqs_latency(sqs_url: str, queue: str, calls: int) -> list[float]:
    """Seconds per SendMessage to the local SQS server, one at a time (the path to the
    connection data holds several SQS calls one after the other)."""
    seconds = []
    async with get_session().create_client("sqs", region_name=REGION, endpoint_url=sqs_url) as sqs:
        for index in range(calls):
            began = time.perf_counter()
            await sqs.send_message(QueueUrl=queue, MessageBody=f"probe {index}")
            seconds.append(time.perf_counter() - began)
    return seconds


def _producer(queue: str, sqs_url: str, name: str, calls: int, concurrency: int) -> list[str]:
    return [
        sys.executable, "-m", "orchestrator.testing.producer",
        "--queue-url", queue, "--endpoint-url", sqs_url, "--calls", str(calls),
        "--concurrency", str(concurrency), "--id-prefix", name, "--timeout-s", "300",
    ]  # fmt: skip


def _summary(results: list[Mapping[str, Any]], emulator: Mapping[str, float]) -> dict[str, Any]:
    calls = [c for r in results for c in r["calls"]]
    latency = distribution([float(c["submit_to_started_s"]) for c in calls])
    stages = {
        stage: distribution([float(c[key]) for c in calls if c.get(key) is not None])
        for stage, key in (("sent", "submit_s"), ("received", "submit_to_received_s"))
    }
    return {
        "calls": len(calls),
        "submit_to_connection_data_s": latency,
        #: Submit -> the request sent (SendMessage), -> `request.received` in hand.
        "stages_s": stages,
        "p50_over_emulator_s": latency["p50"] - emulator["p50"],
        "p95_over_emulator_s": latency["p95"] - emulator["p95"],
        "with_connection_data": sum(1 for c in calls if c["connection_data"]),
        "dropped_replies": sum(int(r["dropped"]) for r in results),
    }


async def measure(opts: ClientOptions, ctx: RunContext) -> dict[str, Any]:
    began = time.monotonic()
    emulator_args = [
        "--agent-delay", opts.agent_delay, "--talk-time", "30:30", "--abandon-rate", "0",
        "--latency", opts.latency_ms, "--max-concurrent-calls", "100000",
        "--seed", str(ctx.seed),
    ]  # fmt: skip
    settings = {
        **BRISK,
        "EVENTS__REPLY_TO_ALLOWED": json.dumps([f"arn:aws:sqs:{REGION}:*:orchestrator-replies-*"]),
        "QUEUE__WAIT_TIME_S": 20,
    }
    workdir = ctx.logs / "client"
    async with (
        sqs_server_process(ctx.log("client-sqs")) as sqs_server,
        worker_rig(
            sqs_server.url, workdir, emulator_args=emulator_args, quotas=QUOTAS,
            settings=settings, prefix="client",
        ) as rig,
    ):  # fmt: skip
        [worker] = await rig.pool.start(1)
        await eventually(lambda: worker.receiving, within=60, message="the worker to receive")
        queue = rig.queues.requests
        say(f"client: emulator StartWebRTCContact latency, {opts.idle_calls} calls")
        emulator = distribution(await emulator_latency(rig.emulator.url, opts.idle_calls))
        probe = await create_queue(rig.sqs, "client-probe")
        sqs = distribution(await sqs_latency(sqs_server.url, probe, opts.idle_calls))
        say(f"client: idle, {opts.idle_calls} calls one at a time")
        idle = await run_child(
            _producer(queue, sqs_server.url, "idle", opts.idle_calls, 1),
            ctx.log("client-idle"),
            timeout_s=600,
        )
        say(f"client: loaded, {opts.loaded_calls} calls at once from {opts.producers} processes")
        shares = [
            opts.loaded_calls // opts.producers + (i < opts.loaded_calls % opts.producers)
            for i in range(opts.producers)
        ]
        runs = {
            f"p{i}": (
                lambda i=i: run_child(
                    _producer(queue, sqs_server.url, f"loaded{i}", shares[i], shares[i]),
                    ctx.log(f"client-loaded-{i}"),
                    timeout_s=600,
                )
            )
            for i in range(opts.producers)
        }
        loaded = await run_all(runs)
    return {
        "options": asdict(opts),
        "wall_s": time.monotonic() - began,
        "emulator_start_s": emulator,
        "sqs_send_s": sqs,
        "idle": _summary([idle], emulator),
        "loaded": _summary(list(loaded.values()), emulator),
    }


TARGETS = {"idle_p95_over_emulator_s": Target("idle.p95_over_emulator_s", "<=", TARGET_OVERHEAD_S)}


def _ms(value: Any) -> str:
    return fmt(1000 * value, 0) if isinstance(value, int | float) else "n/a"


HEADER = (
    "run", "calls", "p50 ms", "p95 ms", "max ms", "p95 over emulator p95 ms",
    "with connection data", "replies dropped",
)  # fmt: skip


def markdown(figures: Mapping[str, Any]) -> str:
    o, emulator = figures["options"], figures["emulator_start_s"]
    target = figures["targets"]["idle_p95_over_emulator_s"]
    rows = []
    for name, label in (("idle", "idle, one call at a time"), ("loaded", "loaded, all at once")):
        run = figures[name]
        d = run["submit_to_connection_data_s"]
        rows.append(
            [
                label,
                str(run["calls"]),
                _ms(d["p50"]),
                _ms(d["p95"]),
                _ms(d["max"]),
                _ms(run["p95_over_emulator_s"]),
                f"{run['with_connection_data']}/{run['calls']}",
                str(run["dropped_replies"]),
            ]
        )
    stages = figures["idle"].get("stages_s")
    stage_line = (
        "Idle, the medians of its stages: the request sent (`submit` returns) "
        f"{_ms(stages['sent']['p50'])} ms, `request.received` in hand "
        f"{_ms(stages['received']['p50'])} ms, `contact.started` in hand "
        f"{_ms(figures['idle']['submit_to_connection_data_s']['p50'])} ms after submit."
        if stages
        else ""
    )
    sqs = figures["sqs_send_s"]
    rows.append(
        ["SQS SendMessage alone", str(sqs["count"]), _ms(sqs["p50"]), _ms(sqs["p95"]),
         _ms(sqs["max"]), "", "", ""]
    )  # fmt: skip
    rows.append(
        [
            "emulator StartWebRTCContact alone",
            str(emulator["count"]),
            _ms(emulator["p50"]),
            _ms(emulator["p95"]),
            _ms(emulator["max"]),
            "",
            "",
            "",
        ]
    )
    setup = " ".join(
        [
            f"`python -m bench client` (wall time {figures['wall_s']:.0f} s). One worker process",
            "allowing the clients' reply queues, the emulator and moto's SQS server in processes",
            "of their own; Connect's quotas raised and the concurrent-call cap lifted; the",
            f"emulator adds {o['latency_ms']} ms to every call, as Connect takes its time.",
            f"Idle: one producer process, {o['idle_calls']} calls one at a time. Loaded:",
            f"{o['producers']} producer processes, {o['loaded_calls']} calls between them, all in",
            "flight at once. Submit -> connection data: `CallClient.submit` to `contact.started`",
            "(ParticipantToken and ConnectionData) in the producer's hands.",
        ]
    )
    return "\n\n".join(
        part
        for part in [
            "## The producer's client: submit -> connection data",
            setup,
            table(HEADER, rows),
            f"Target: idle p95 at most {TARGET_OVERHEAD_S * 1000:.0f} ms over the emulator's own "
            f"StartWebRTCContact p95: {_ms(target['value'])} ms, {verdict(target)}. Besides "
            "the start call, the path holds two SQS sends and two long-poll wake-ups one "
            "after the other: the request sent and received; contact.started to the reply "
            "queue (at the same time as to the configured sinks) and the client's receive. "
            "request.received is delivered while the start call is out, so it adds nothing. "
            "The overhead is thus about two SendMessage latencies of the SQS server measured "
            "in the same run (moto here, one request at a time, on a shared machine: see the "
            "load average above; moto's long poll wakes as a message is sent, so a wake-up "
            "costs its ReceiveMessage answer; SQS itself answers in-region in a few ms). "
            "Loaded, every step queues behind that one SQS server: the figure is its "
            "throughput, not the worker's.",
            stage_line,
        ]
        if part
    )


SCENARIO = Scenario(
    "client", "the producer's client: submit -> connection data, idle and 200 in flight",
    ClientOptions(), QUICK, measure, markdown, seed=20261203, targets=TARGETS,
)  # fmt: skip
