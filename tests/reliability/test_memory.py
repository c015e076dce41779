"""Memory stays bounded while a worker chews through hundreds of large poison bodies.

The SQS server runs in its own process here (moto keeps every message in memory, and tracemalloc
would count it); the emulator and the worker run in this one. The bodies are sent before tracing
starts and never held by the test, so what tracemalloc sees is the worker's own use.

Bounds, for 240 bodies of about 250 KB (60 MB in all, each received twice: 120 MB through the
worker):

* peak < 64 MB over the baseline. The worker holds at most a few receives' worth of bodies at once:
  a receive is at most 10 messages (2.5 MB), and each body exists a few times over while it is
  parsed (the response bytes, the decoded text, the UTF-8 check, the JSON document), so one
  receive costs about 10-15 MB in flight. Retaining every body would need 60-120 MB.
* retained < 8 MB after the run: the clients, batchers and lifecycles are gone; what may stay is
  interpreter-level caching. One retained body per message would already be 60 MB.
"""

from __future__ import annotations

import gc
import io
import json
import os
import subprocess
import sys
import tracemalloc
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import pytest
from aiobotocore.session import get_session

from orchestrator.daemon.assembly import open_worker
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.testing.emulator import Emulator
from tests.conftest import REGION, emulator_config
from tests.reliability.logcapture import captured_logs
from tests.reliability.poison import many_unknown_fields, valid_document
from tests.support import (
    create_queue_with_dlq,
    eventually,
    queue_counts,
    request_body,
    settings_for,
)
from tests.support import send_all as send_recording_ids
from tests.support.runs import RunOptions, run_worker_on

# A guard against a hang, not a bound on speed: about 40 s idle, past 240 s at load 20.
pytestmark = pytest.mark.timeout(600)

MB = 1024 * 1024
PEAK_BOUND = 64 * MB
RETAINED_BOUND = 8 * MB
BODIES = 240
BODY_CHARS = 250_000

_SQS_SERVER = """
import sys
from orchestrator.testing.local_sqs import LocalSqsServer
with LocalSqsServer() as server:
    print(server.url, flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def sqs_process_url() -> Iterator[str]:
    """moto's SQS server in a child process, until the test ends (stdin closes)."""
    with subprocess.Popen(
        [sys.executable, "-c", _SQS_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        assert process.stdout is not None and process.stdin is not None
        try:
            url = process.stdout.readline().strip()
            assert url.startswith("http://127.0.0.1:"), f"SQS server did not start: {url!r}"
            yield url
        finally:
            process.stdin.close()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def large_poison(index: int) -> str:
    """One of seven kinds of ~250 KB invalid body (all but one with a readable RequestId)."""
    request_id = f"mem-{index}"
    document: dict[str, Any] = valid_document(request_id)
    kind = index % 7
    if kind == 0:
        document["ParticipantDetails"] = {"DisplayName": "n" * BODY_CHARS}
    elif kind == 1:
        document["Padding"] = "p" * BODY_CHARS
    elif kind == 2:  # 2,000 unknown fields with long names (the 20,000-key body is cheaper to
        # test without tracemalloc: see test_worker_poison)
        document.update({f"{i:05d}" + "u" * 120: 0 for i in range(2_000)})
    elif kind == 3:
        document["K" * BODY_CHARS] = 1
    elif kind == 4:
        return "not json " + "x" * BODY_CHARS
    elif kind == 5:
        document["Attributes"] = {f"k{i}": "a" * 30_000 for i in range(8)}
    else:
        document["Description"] = "d" * BODY_CHARS
    return json.dumps(document)


async def test_memory_stays_bounded_over_hundreds_of_large_poison_bodies(
    sqs_process_url: str,
) -> None:
    valid_ids = [f"mem-valid-{i}" for i in range(5)]
    with open(os.devnull, "w", encoding="utf-8") as devnull:  # noqa: ASYNC230 (/dev/null)
        async with (
            Emulator(emulator_config()) as emulator,
            get_session().create_client(
                "sqs", region_name=REGION, endpoint_url=sqs_process_url
            ) as sqs,
        ):
            # Warm-up: load service models, build validators, fill the interpreter's caches.
            warm = [large_poison(i) for i in range(7)] + [request_body("mem-warm")]
            await run_worker_on(
                sqs_process_url, warm, emulator=emulator, options=RunOptions(log_stream=devnull)
            )

            queue, dlq = await create_queue_with_dlq(sqs, max_receive_count=2)
            for start in range(0, BODIES, 2):  # 2 x 250 KB per batch: under SQS's 1 MiB
                await send_recording_ids(
                    sqs, queue, [large_poison(i) for i in range(start, min(start + 2, BODIES))]
                )
            await send_recording_ids(sqs, queue, [request_body(rid) for rid in valid_ids])
            events = (await sqs.create_queue(QueueName=f"mem-ev-{uuid.uuid4().hex[:8]}"))[
                "QueueUrl"
            ]
            settings = settings_for(
                emulator.url, sqs_process_url, queue, events={"sqs_queue_url": events}
            )

            gc.collect()
            tracemalloc.start()
            try:
                baseline, _ = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
                with captured_logs(stream=devnull):
                    async with open_worker(settings) as worker:
                        await worker.run(drain=True)
                rejected = worker.metrics.value(
                    "orchestrator_requests_total", {"outcome": "request.rejected"}
                )
                acknowledged = worker.metrics.value("orchestrator_messages_acknowledged_total")
                del worker
                gc.collect()
                retained, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()

            # Every body in the DLQ, none left (visible or hidden) in the queue: the drain
            # stops only once the queue's redrive has moved them all.
            left = (await queue_counts(sqs, dlq), await queue_counts(sqs, queue))
            assert left == ((BODIES, 0), (0, 0))

    assert rejected == BODIES  # each body counted once (sent on its first and last receive)
    assert acknowledged == len(valid_ids)
    print(
        f"\nmemory over baseline: peak {(peak - baseline) / MB:.1f} MB, "
        f"retained {(retained - baseline) / MB:.2f} MB"
    )
    assert peak - baseline < PEAK_BOUND
    assert retained - baseline < RETAINED_BOUND


class GatedSink:
    """An event sink that holds every `request.rejected` delivery until the gate opens (a sink
    that is slow or retrying: rejections pile up in flight)."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = anyio.Event()

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        if any(e.type is EventType.REJECTED for e in events):
            await self.gate.wait()


async def test_rejections_waiting_on_a_slow_sink_hold_only_their_errors(
    sqs_process_url: str,
) -> None:
    """Ten 230 KB bodies of 20,000 unknown fields each, all waiting to deliver their rejection.

    Parsing one builds about 5 MB (the JSON document twice, 20,000 pydantic errors); a waiting
    rejection must keep only its 20 errors, not that, or a burst of poison in front of a slow
    sink multiplies memory by the in-flight limit. Held while waiting: the ten bodies themselves
    (2.3 MB) and small change; the bound, 10 MB, is what ten parsed documents would take twice.
    """
    count = 10
    bodies = [many_unknown_fields(f"held-{i}", 20_000).text for i in range(count)]
    gated = GatedSink()
    logs = io.StringIO()
    async with (
        Emulator(emulator_config()) as emulator,
        get_session().create_client("sqs", region_name=REGION, endpoint_url=sqs_process_url) as sqs,
    ):
        queue, dlq = await create_queue_with_dlq(sqs, max_receive_count=1)
        await send_recording_ids(sqs, queue, bodies)
        del bodies
        settings = settings_for(emulator.url, sqs_process_url, queue)
        with captured_logs(stream=logs):
            async with open_worker(settings, extra_sinks=[gated]) as worker:
                gc.collect()
                tracemalloc.start()
                try:
                    baseline, _ = tracemalloc.get_traced_memory()
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(lambda: worker.run(drain=True))
                        await eventually(
                            lambda: logs.getvalue().count("request.invalid_message") == count,
                            message="every body to be parsed and rejected",
                        )
                        assert worker.in_flight == count  # all waiting on the sink
                        gc.collect()
                        held, _ = tracemalloc.get_traced_memory()
                        gated.gate.set()
                finally:
                    tracemalloc.stop()
        assert await queue_counts(sqs, dlq) == (count, 0)

    print(f"\nten waiting rejections hold {(held - baseline) / MB:.1f} MB")
    assert held - baseline < 10 * MB
