"""The `orchestrator` command as users run it: real processes, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest
from anyio.abc import Process

from orchestrator import __version__
from orchestrator.testing.emulator import Emulator
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.conftest import ACCESS_KEY, SECRET_KEY
from tests.support import (
    FLOW_ID,
    INSTANCE_ID,
    create_queue_with_dlq,
    drain_bodies,
    eventually,
    eventually_sync,
    queue_counts,
    request_body,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(120)


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(extra)
    return env


@pytest.mark.parametrize(
    "command",
    [
        "",
        "run",
        "demo",
        "enqueue",
        "cancel",
        "check-config",
        "healthcheck",
        "emulator",
        "dev",
        "dlq",
        "dlq inspect",
        "dlq redrive",
    ],
)
def test_every_command_explains_itself(command: str) -> None:
    args = [sys.executable, "-m", "orchestrator", *command.split(), "--help"]
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


def test_version_prints_the_package_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"orchestrator {__version__}"


async def run_cli(*args: str, env: dict[str, str], stdin: bytes | None = None) -> tuple[int, str]:
    """Run `orchestrator ARGS`; (exit status, stdout and stderr together)."""
    result = await anyio.run_process(
        [sys.executable, "-m", "orchestrator", *args],
        input=stdin,
        env=cli_env(**env),
        check=False,
    )
    return result.returncode, (result.stdout + result.stderr).decode()


async def test_enqueue_takes_queue_and_endpoint_from_the_configuration(
    sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    env = {"ORCHESTRATOR_QUEUE__URL": queue, "ORCHESTRATOR_AWS__ENDPOINT_URL": sqs_server.url}
    stdin = "\n".join(request_body(f"conf-{i}") for i in range(3)).encode()
    code, output = await run_cli("enqueue", env=env, stdin=stdin)
    assert code == 0, output
    assert f"sent 3 of 3 request(s) to {queue}" in output
    assert await queue_counts(sqs_client, queue) == (3, 0)


async def test_enqueue_splits_batches_at_the_size_limit_and_skips_a_line_over_it(
    tmp_path: Path, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue = (
        await sqs_client.create_queue(
            QueueName=f"big-{os.urandom(4).hex()}", Attributes={"MaximumMessageSize": "262144"}
        )
    )["QueueUrl"]
    # Ten lines of 100 KB: one batch of 10 entries would be 1 MB, over SQS's limits.
    bodies = [request_body(f"big-{i}", Padding="x" * 100_000) for i in range(10)]
    too_long = request_body("too-long", Padding="y" * 300_000)
    lines = tmp_path / "big.jsonl"
    lines.write_text("\n".join([*bodies[:4], too_long, *bodies[4:]]) + "\n")
    code, output = await run_cli(
        "enqueue",
        "--no-check",  # Padding is not a field of a call request: sent unchecked
        "--queue-url",
        queue,
        "--endpoint-url",
        sqs_server.url,
        str(lines),
        env={},
    )
    assert code == 1, output
    assert "skipped: line 5: " in output and "over the queue's 262144-byte limit" in output
    assert "sent 10 of 11 request(s)" in output
    assert "Traceback" not in output
    received = {json.loads(b)["RequestId"] for b in await drain_bodies(sqs_client, queue)}
    assert received == {f"big-{i}" for i in range(10)}


async def test_enqueue_refuses_invalid_lines_by_the_workers_rules_and_sends_the_rest(
    sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    uses_defaults = json.dumps({"RequestId": "bare", "ParticipantDetails": {"DisplayName": "J"}})
    lines = [
        request_body("good-1"),
        "{not json",
        request_body("no-name", ParticipantDetails={"DisplayName": ""}),
        uses_defaults,  # valid only with the configured [connect] instance and flow
        request_body("good-2"),
    ]
    stdin = "\n".join(lines).encode()
    env = {
        "ORCHESTRATOR_QUEUE__URL": queue,
        "ORCHESTRATOR_AWS__ENDPOINT_URL": sqs_server.url,
        "ORCHESTRATOR_CONNECT__INSTANCE_ID": INSTANCE_ID,
    }
    code, output = await run_cli("enqueue", env=env, stdin=stdin)
    assert code == 1, output
    refused = sorted(line for line in output.splitlines() if line.startswith("refused: "))
    assert refused[0].startswith("refused: line 2: invalid call request: body: not valid JSON")
    assert refused[1].startswith("refused: line 3: invalid call request: ")
    assert "ParticipantDetails.DisplayName" in refused[1]
    assert refused[2].startswith("refused: line 4: ") and "ContactFlowId: required" in refused[2]
    assert len(refused) == 3
    assert f"sent 2 of 5 request(s) to {queue}" in output
    sent = {json.loads(b)["RequestId"] for b in await drain_bodies(sqs_client, queue)}
    assert sent == {"good-1", "good-2"}

    # With the flow configured too, the bare request passes; --no-check sends everything.
    env["ORCHESTRATOR_CONNECT__CONTACT_FLOW_ID"] = FLOW_ID
    code, output = await run_cli("enqueue", env=env, stdin=uses_defaults.encode())
    assert (code, output.strip()) == (0, f"sent 1 of 1 request(s) to {queue}")
    code, output = await run_cli("enqueue", "--no-check", env=env, stdin=stdin)
    assert code == 0, output
    assert await queue_counts(sqs_client, queue) == (6, 0)


async def test_cancel_sends_one_checked_cancel_per_request_apart_from_its_fifo_group(
    sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client, fifo=True)
    env = {"ORCHESTRATOR_QUEUE__URL": queue, "ORCHESTRATOR_AWS__ENDPOINT_URL": sqs_server.url}
    bad_cancel = json.dumps({"Action": "cancel", "RequestId": "fifo-1", "Oops": 1})
    stdin = "\n".join([request_body("fifo-1"), bad_cancel]).encode()
    code, output = await run_cli("enqueue", env=env, stdin=stdin)
    assert code == 1, output
    assert "refused: line 2: invalid cancel: Oops" in output

    code, output = await run_cli("cancel", "fifo-1", "fifo-2", env=env)
    assert (code, output.strip()) == (0, f"sent 2 of 2 cancel(s) to {queue}")
    code, output = await run_cli("cancel", "fifo-1", "fifo-2", "--contact-id", "c-1", env=env)
    assert code == 2 and "names the contact of one request" in output
    code, output = await run_cli("cancel", "fifo-3", "--contact-id", "c-3", env=env)
    assert code == 1 and "InstanceId: required with ContactId" in output

    # Deduplicated apart from the request (same RequestId), in groups of their own.
    bodies = [json.loads(b) for b in await drain_bodies(sqs_client, queue)]
    assert sorted((b.get("Action", "start"), b["RequestId"]) for b in bodies) == [
        ("cancel", "fifo-1"),
        ("cancel", "fifo-2"),
        ("start", "fifo-1"),
    ]


async def test_enqueue_reports_a_missing_queue_in_one_line(sqs_server: LocalSqsServer) -> None:
    missing = f"{sqs_server.url}/123456789012/no-such-queue"
    code, output = await run_cli(
        "enqueue",
        "--queue-url",
        missing,
        "--endpoint-url",
        sqs_server.url,
        env={},
        stdin=request_body("lost").encode(),
    )
    assert code == 1
    assert sorted(output.splitlines()) == [
        f"orchestrator enqueue: queue does not exist: {missing}",
        f"sent 0 of 1 request(s) to {missing}",
    ]


async def test_enqueue_reports_an_unreachable_endpoint_in_one_line() -> None:
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{unused.getsockname()[1]}"
    code, output = await run_cli(
        "enqueue",
        "--queue-url",
        f"{endpoint}/123456789012/q",
        "--endpoint-url",
        endpoint,
        env={},
        stdin=request_body("lost").encode(),
    )
    assert code == 1
    assert f"orchestrator enqueue: cannot reach the SQS endpoint {endpoint}" in output
    assert "Traceback" not in output


async def test_a_busy_metrics_port_stops_start_up_with_one_line(
    sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    with socket.socket() as busy:  # another worker on this host holds the port
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = await anyio.run_process(
            [str(Path(sys.executable).parent / "orchestrator"), "run"],
            env=cli_env(
                ORCHESTRATOR_QUEUE__URL=queue,
                ORCHESTRATOR_AWS__ENDPOINT_URL=sqs_server.url,
                ORCHESTRATOR_OBSERVABILITY__PORT=str(port),
            ),
            check=False,
        )
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert "Traceback" not in stderr + result.stdout.decode()
    [line] = [text for text in stderr.splitlines() if text.strip()]
    assert line.startswith(f"orchestrator: observability.port: 127.0.0.1:{port} is already in use")
    assert "ORCHESTRATOR_OBSERVABILITY__PORT" in line


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


def test_demo_runs_the_whole_job_and_prints_a_summary(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "demo", "--requests", "6"],
        capture_output=True,
        text=True,
        timeout=110,
        env={**cli_env(), "TMPDIR": str(tmp_path)},  # where the demo keeps the worker's log
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Summary" in out and "TIMED OUT" not in out
    assert "request.rejected" in out
    assert "dead-letter queue         1 message (the invalid request)" in out
    assert f"Worker log: {tmp_path}" in out


def test_a_sigterm_during_start_up_ends_the_worker_quietly(sqs_server: LocalSqsServer) -> None:
    """A pod stopped while the worker still imports and connects exits 0, not by the signal."""
    env = {
        **os.environ,
        "ORCHESTRATOR_QUEUE__URL": f"{sqs_server.url}/123456789012/never-created",
        "ORCHESTRATOR_AWS__ENDPOINT_URL": sqs_server.url,
        "ORCHESTRATOR_CONNECT__ENDPOINT_URL": "http://127.0.0.1:9",
        "ORCHESTRATOR_OBSERVABILITY__ENABLED": "false",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # As soon as the process handles SIGTERM at all (its first Python statements), whatever it
    # is doing then: importing, loading settings, or waiting for a queue that does not exist.
    # Each of them ends with status 0 and no traceback.
    eventually_sync(lambda: _catches(process.pid, signal.SIGTERM), within=30, interval=0.005)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]
    assert "Traceback" not in err + out


def test_a_sigterm_while_the_worker_is_being_built_is_the_event_loop_s(
    sqs_server: LocalSqsServer,
) -> None:
    """Once its event loop runs, the worker takes signals there, before it builds anything: the
    entry point's handler raises SystemExit, which inside a task group (batchers, sinks) ended
    the process with an exception group's traceback and status 1 (the chaos soak, a worker
    SIGTERMed 5 s after it started on a loaded machine). Caught here while its first client
    waits for credentials from a container endpoint (a socket that never answers)."""
    with socket.create_server(("127.0.0.1", 0)) as credentials:
        credentials.settimeout(60)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ORCHESTRATOR_"))}
        env |= {
            "ORCHESTRATOR_QUEUE__URL": f"{sqs_server.url}/123456789012/never-created",
            "ORCHESTRATOR_AWS__ENDPOINT_URL": sqs_server.url,
            "ORCHESTRATOR_CONNECT__ENDPOINT_URL": "http://127.0.0.1:9",
            "ORCHESTRATOR_OBSERVABILITY__ENABLED": "false",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": (
                f"http://127.0.0.1:{credentials.getsockname()[1]}/credentials"
            ),
            "AWS_METADATA_SERVICE_TIMEOUT": "60",
        }
        with subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            asking, _ = credentials.accept()
            with asking:
                process.send_signal(signal.SIGTERM)
                out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]
    assert "Traceback" not in err + out
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["event"] for r in records] == ["worker.signal"]
    assert records[0]["signal"] == "SIGTERM" and "start-up" in records[0]["detail"]


def _catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler for `signum` (Linux: SigCgt in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def test_the_daemon_commands_never_import_the_testing_kit() -> None:
    """`orchestrator run` (and its parser, help included) starts without the testing kit."""
    code = (
        "import sys, contextlib, io\n"
        "from orchestrator.cli import build_parser\n"
        "parser = build_parser()\n"
        "parser.parse_args(['run'])\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    parser.parse_args(['--help'])\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('orchestrator.testing'))\n"
        "assert not loaded, loaded\n"
        "parser.parse_args(['emulator', '--port', '0'])\n"
        "assert 'orchestrator.testing.emulator.cli' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
