"""/metrics, /healthz and /readyz of a running worker, scraped over HTTP."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.observability import serve_observability
from orchestrator.daemon.settings import ObservabilitySettings
from orchestrator.daemon.worker import Worker
from orchestrator.metrics import Metrics
from orchestrator.sqs import QueueMessage
from orchestrator.testing.emulator import Emulator
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.support import (
    create_queue_with_dlq,
    eventually,
    request_body,
    send_all,
    settings_for,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(90)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def aget(url: str) -> tuple[int, str]:
    return await anyio.to_thread.run_sync(get, url)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@asynccontextmanager
async def observed(
    worker: Worker, metrics: Metrics, connect_url: str, **settings: Any
) -> AsyncIterator[str]:
    config = ObservabilitySettings(port=0, **settings)
    async with anyio.create_task_group() as tg:
        url: str = await tg.start(serve_observability, config, worker, metrics, connect_url)
        yield url
        tg.cancel_scope.cancel()


async def test_metrics_move_as_requests_complete(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    metrics = Metrics()
    settings = settings_for(emulator.url, sqs_server.url, queue)
    async with (
        open_worker(settings, metrics=metrics) as worker,
        observed(worker, metrics, emulator.url) as url,
    ):
        status, before_text = await aget(f"{url}/metrics")
        assert status == 200
        before = samples(before_text)
        await send_all(sqs_client, queue, [request_body(f"m-{i}") for i in range(3)] + ["{"])
        await worker.run(drain=True)
        status, after_text = await aget(f"{url}/metrics")
    after = samples(after_text)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("orchestrator_messages_received_total") >= 4
    assert moved("orchestrator_messages_acknowledged_total") == 3
    assert moved("orchestrator_messages_handed_back_total", reason="rejected") >= 1
    assert moved("orchestrator_requests_total", outcome="screen_sharing.started") == 3
    assert moved("orchestrator_requests_total", outcome="request.rejected") >= 1
    assert (
        moved("orchestrator_connect_calls_total", operation="StartWebRTCContact", result="ok") == 3
    )
    assert moved("orchestrator_connect_calls_total", operation="DescribeContact", result="ok") >= 3
    assert moved("orchestrator_polls_per_contact_count") == 3
    assert moved("orchestrator_time_to_agent_seconds_count") == 3
    assert moved("orchestrator_agent_detection_delay_seconds_count", via="poll") == 3
    assert moved("orchestrator_event_publishes_total", sink="log") >= 12
    assert after[("orchestrator_lifecycles_in_flight", ())] == 0
    assert (
        after[("orchestrator_rate_budget_rate_per_second", (("operation", "DescribeContact"),))] > 0
    )
    assert ("orchestrator_event_loop_lag_seconds_count", ()) in after


async def test_healthz_fails_while_the_event_loop_is_stalled(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    metrics = Metrics()
    settings = settings_for(emulator.url, sqs_server.url, queue)
    async with (
        open_worker(settings, metrics=metrics) as worker,
        observed(worker, metrics, emulator.url, stall_threshold_s=0.5) as url,
    ):
        status, _ = await aget(f"{url}/healthz")
        assert status == 200
        seen: list[tuple[int, str]] = []
        answered = threading.Event()

        def probe_during_stall() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                status, body = get(f"{url}/healthz")
                if status == 503:
                    seen.append((status, body))
                    break
                time.sleep(0.05)
            answered.set()

        probe = threading.Thread(target=probe_during_stall)
        probe.start()
        # Block the worker's event loop (what a CPU-bound bug or a blocking call would do) until
        # the probe, served from its own thread, has reported the stall.
        blocked_since = time.monotonic()
        while not answered.is_set() and time.monotonic() - blocked_since < 10:
            time.sleep(0.01)  # noqa: ASYNC251 - deliberately blocking: this IS the stall under test
        probe.join()
        assert seen, "/healthz never reported the stalled loop"
        assert json.loads(seen[0][1])["checks"]["event_loop_stalled"] is True

        async def healthy_again() -> bool:
            return (await aget(f"{url}/healthz"))[0] == 200

        await eventually(healthy_again, message="/healthz to recover")


class HangingSource:
    """A queue whose ReceiveMessage never answers (a wedged connection)."""

    async def receive(
        self, max_messages: int, *, wait_time_s: float, visibility_timeout_s: int
    ) -> list[QueueMessage]:
        await anyio.sleep_forever()
        return []

    async def delete(self, message: QueueMessage) -> None:
        raise AssertionError("nothing to delete")

    async def change_visibility(self, message: QueueMessage, timeout_s: int) -> None:
        raise AssertionError("nothing to change")

    async def max_receive_count(self) -> int | None:
        return 3


async def test_healthz_fails_when_the_receive_loop_makes_no_progress(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    metrics = Metrics()
    settings = settings_for(emulator.url, sqs_server.url, queue)
    async with (
        open_worker(settings, metrics=metrics) as worker,
        observed(worker, metrics, emulator.url, stall_threshold_s=0.3) as url,
        anyio.create_task_group() as tg,
    ):
        worker.source = HangingSource()
        tg.start_soon(worker.run)

        async def stalled() -> bool:
            status, body = await aget(f"{url}/healthz")
            return status == 503 and json.loads(body)["checks"]["receive_loop_stalled"]

        await eventually(stalled, message="/healthz to report the stalled receive loop")
        worker.stop()


async def test_readyz_turns_unready_during_shutdown(
    start_emulator: Any, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(2.0, 2.0))
    queue, _ = await create_queue_with_dlq(sqs_client)
    await send_all(sqs_client, queue, [request_body("slow")])
    metrics = Metrics()
    settings = settings_for(emulator.url, sqs_server.url, queue, shutdown={"grace_period_s": 30})
    async with (
        open_worker(settings, metrics=metrics) as worker,
        observed(worker, metrics, emulator.url) as url,
        anyio.create_task_group() as tg,
    ):
        status, _ = await aget(f"{url}/readyz")
        assert status == 503  # not running yet
        tg.start_soon(worker.run)

        async def ready() -> bool:
            return (await aget(f"{url}/readyz"))[0] == 200

        await eventually(ready, message="/readyz to turn ready")
        # Started: a message whose contact has not started goes back at the signal.
        await eventually(
            lambda: worker.in_flight == 1 and worker.leases.waiting_to_start == 0,
            message="the lifecycle to start",
        )
        worker.stop()
        status, body = await aget(f"{url}/readyz")
        assert status == 503
        assert json.loads(body)["checks"]["stopping"] is True
        assert worker.in_flight == 1  # still draining within the grace period

    assert metrics.value("orchestrator_messages_acknowledged_total") == 1


async def test_readyz_reports_an_unreachable_connect_endpoint(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    metrics = Metrics()
    settings = settings_for(emulator.url, sqs_server.url, queue)
    closed_port = "http://127.0.0.1:9"  # discard port: nothing listens there
    async with (
        open_worker(settings, metrics=metrics) as worker,
        observed(worker, metrics, closed_port) as url,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(worker.run)

        async def unreachable() -> bool:
            status, body = await aget(f"{url}/readyz")
            checks = json.loads(body)["checks"]
            return status == 503 and checks["running"] and checks["connect_error"] is not None

        await eventually(unreachable, message="/readyz to report Connect unreachable")
        worker.stop()
