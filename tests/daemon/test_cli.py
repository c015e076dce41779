"""The `orchestrator` command as users run it: real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest
from anyio.abc import Process

from orchestrator.testing.emulator import Emulator
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.conftest import ACCESS_KEY, SECRET_KEY
from tests.support import create_queue_with_dlq, eventually, queue_counts, request_body

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(120)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(extra)
    return env


@pytest.mark.parametrize(
    "command", ["", "run", "demo", "enqueue", "check-config", "healthcheck", "emulator"]
)
def test_every_command_explains_itself(command: str) -> None:
    args = [sys.executable, "-m", "orchestrator", *([command] if command else []), "--help"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert "usage: orchestrator" in result.stdout
    assert len(result.stdout.splitlines()) > 3


async def test_enqueue_sends_json_lines_from_a_file(
    tmp_path: Path, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    lines = tmp_path / "requests.jsonl"
    lines.write_text("\n".join(request_body(f"cli-{i}") for i in range(12)) + "\n\n")
    result = await anyio.run_process(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "enqueue",
            "--queue-url",
            queue,
            "--endpoint-url",
            sqs_server.url,
            str(lines),
        ],
        env=cli_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert b"sent 12 of 12" in result.stdout
    assert await queue_counts(sqs_client, queue) == (12, 0)


async def read_lines(process: Process, into: list[str]) -> None:
    assert process.stdout is not None
    buffer = b""
    async for chunk in process.stdout:
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        into.extend(line.decode() for line in complete)


async def test_run_processes_requests_logs_json_and_drains_on_sigterm(
    tmp_path: Path, emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    events_file = tmp_path / "events.jsonl"
    env = cli_env(
        ORCHESTRATOR_QUEUE__URL=queue,
        ORCHESTRATOR_QUEUE__WAIT_TIME_S="1",
        ORCHESTRATOR_AWS__ENDPOINT_URL=sqs_server.url,
        ORCHESTRATOR_CONNECT__ENDPOINT_URL=emulator.url,
        ORCHESTRATOR_WATCH__FIRST_DELAY_S="0.1",
        ORCHESTRATOR_WATCH__MAX_INTERVAL_S="0.3",
        ORCHESTRATOR_EVENTS__JSONL_PATH=str(events_file),
        ORCHESTRATOR_OBSERVABILITY__PORT="0",
        ORCHESTRATOR_SHUTDOWN__GRACE_PERIOD_S="5",
    )
    await sqs_client.send_message(QueueUrl=queue, MessageBody=request_body("cli-run-1"))
    lines: list[str] = []
    async with (
        await anyio.open_process(
            [sys.executable, "-m", "orchestrator", "run"], env=env, stderr=subprocess.STDOUT
        ) as process,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(read_lines, process, lines)

        def finished() -> bool:
            return events_file.exists() and '"final":true' in events_file.read_text()

        await eventually(finished, within=30, message="the request's final event")
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            code = await process.wait()
    assert code == 0
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(records) == len(lines), "every log line is JSON"
    names = [r["event"] for r in records]
    assert "worker.started" in names
    assert "screen_sharing.started" in names
    assert "worker.signal" in names
    assert names[-1] == "worker.stopped"
    log_text = "\n".join(lines)
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    started = next(e for e in events if e["type"] == "contact.started")
    assert started["data"]["ParticipantToken"] not in log_text
    assert started["data"]["ConnectionData"]["Attendee"]["JoinToken"] not in log_text
    assert ACCESS_KEY not in log_text and SECRET_KEY not in log_text
    assert await queue_counts(sqs_client, queue) == (0, 0)


def test_demo_runs_the_whole_job_and_prints_a_summary() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "demo", "--requests", "6"],
        capture_output=True,
        text=True,
        timeout=110,
        env=cli_env(),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Summary" in out and "TIMED OUT" not in out
    assert "request.rejected" in out
    assert "dead-letter queue         1 message(s)" in out
