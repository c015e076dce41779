"""A wrong queue says so: a request queue that does not exist is logged as `queue.not_found`
with its URL, counted, and `/readyz` agrees with itself; the worker that is not ready consumes no
contact events (they stay for the workers that are); `check-config --probe` tries the queues and
Connect and names each problem. Real worker, real SQS server, real emulator."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import anyio
import pytest
from structlog.testing import capture_logs

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.redrive import QUEUE_PART
from orchestrator.metrics import Metrics
from orchestrator.testing.emulator import Emulator
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.conftest import ACCESS_KEY, SECRET_KEY
from tests.daemon.test_cli import cli_env
from tests.daemon.test_observability import aget, observed
from tests.support import (
    REGION,
    create_queue,
    create_queue_with_dlq,
    eventually,
    queue_counts,
    send_all,
    settings_for,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(90)


async def test_a_missing_request_queue_is_named_counted_and_consumes_no_contact_events(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    real, _ = await create_queue_with_dlq(sqs_client)
    missing = real.rsplit("/", 1)[0] + "/no-such-queue"
    events_queue = await create_queue(sqs_client, prefix="contact-events")
    # Contact events another worker needs: this one, not ready, must leave them.
    await send_all(sqs_client, events_queue, [json.dumps({"detail-type": "x"})] * 3)
    metrics = Metrics()
    settings = settings_for(
        emulator.url,
        sqs_server.url,
        missing,
        contact_events={"queue_url": events_queue, "wait_time_s": 1},
    )
    with capture_logs() as logs:
        async with (
            open_worker(settings, metrics=metrics) as worker,
            observed(worker, metrics, emulator.url) as url,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(worker.run)
            found = {"queue": "requests"}
            await eventually(
                lambda: metrics.value("orchestrator_queue_not_found_total", found) >= 2,
                message="the missing queue counted twice",
            )
            status, body = await aget(f"{url}/readyz")
            checks = json.loads(body)["checks"]
            # Not two answers to one question: the queue is not ok, wherever it is read.
            assert status == 503
            assert checks["queue_ok"] is False
            assert checks[QUEUE_PART]["ok"] is False
            assert missing in checks[QUEUE_PART]["reason"]
            assert not worker.readiness.working(QUEUE_PART, besides="contact_events")
            worker.stop()
    not_found = [line for line in logs if line["event"] == "queue.not_found"]
    assert not_found and not_found[0]["queue_url"] == missing
    assert not [line for line in logs if line["event"] == "queue.redrive_policy_unreadable"]
    assert metrics.value("orchestrator_contact_events_received_total", {"type": "x"}) == 0
    assert await queue_counts(sqs_client, events_queue) == (3, 0)


def probe_env(extra: dict[str, str]) -> dict[str, str]:
    return cli_env(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        ORCHESTRATOR_AWS__REGION=REGION,
        **extra,
    )


async def check_config_probe(**settings: str) -> tuple[int, list[str]]:
    result = await anyio.run_process(
        [sys.executable, "-m", "orchestrator", "check-config", "--probe"],
        env=probe_env({f"ORCHESTRATOR_{k.upper()}": v for k, v in settings.items()}),
        check=False,
    )
    lines = result.stderr.decode().splitlines()
    return result.returncode, [line for line in lines if "check-config:" in line]


async def test_check_config_probe_passes_a_configuration_whose_queues_and_connect_answer(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    code, problems = await check_config_probe(
        aws__endpoint_url=sqs_server.url, queue__url=queue, connect__endpoint_url=emulator.url
    )
    assert (code, problems) == (0, [])


async def test_check_config_probe_names_each_problem_and_fails(
    sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    missing = queue.rsplit("/", 1)[0] + "/no-such-queue"
    code, problems = await check_config_probe(
        aws__endpoint_url=sqs_server.url,
        queue__url=missing,
        contact_events__queue_url=queue,  # this one exists
        connect__endpoint_url="http://127.0.0.1:9",  # discard port: nothing listens there
    )
    assert code == 1
    assert len(problems) == 2, problems
    assert "request queue" in problems[0] and missing in problems[0]
    assert "connect: cannot reach http://127.0.0.1:9" in problems[1]
