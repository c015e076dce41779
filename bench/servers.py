"""The peers, each in its own process so their CPU and memory are not the benchmark's: the Connect
emulator (`orchestrator emulator`) and an SQS server (moto, `python -m bench.sqs_server`); also
the worker processes of the scale scenario. Ground truth is read over the emulator's HTTP API."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from .common import FAKE_AWS_ENV

EMULATOR_READY = "Connect emulator listening on "
SQS_READY = "SQS server listening on "
RESULT_PREFIX = "BENCH-RESULT "
_MAX_LINE = 1 << 20


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(FAKE_AWS_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class ServerProcess:
    """A child process that announced its URL on stdout."""

    name: str
    process: Process
    url: str

    @property
    def pid(self) -> int:
        return self.process.pid


async def _announced(process: Process, prefix: str, timeout_s: float) -> str:
    """What `process` printed after `prefix` at the start of a stdout line."""
    assert process.stdout is not None
    lines = BufferedByteReceiveStream(process.stdout)
    with anyio.fail_after(timeout_s):
        while True:
            try:
                raw = await lines.receive_until(b"\n", _MAX_LINE)
            except (anyio.EndOfStream, anyio.IncompleteRead):
                code = await process.wait()
                raise RuntimeError(f"child exited (status {code}) before announcing") from None
            line = raw.decode("utf-8", errors="replace")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()


async def _stop(process: Process, timeout_s: float = 10.0, *, exit_within_s: float = 0.0) -> None:
    """Give the process `exit_within_s` to exit by itself, then SIGTERM, then SIGKILL."""
    with anyio.CancelScope(shield=True):
        if exit_within_s > 0:
            with anyio.move_on_after(exit_within_s):
                await process.wait()
        if process.returncode is None:
            process.terminate()
            with anyio.move_on_after(timeout_s):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        await process.aclose()


@contextlib.asynccontextmanager
async def server_process(
    name: str, argv: Sequence[str], ready_prefix: str, log_path: Path, *, timeout_s: float = 60.0
) -> AsyncIterator[ServerProcess]:
    """Start `argv`, wait for its announcement, stop it (SIGTERM, then SIGKILL) on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log:
        process = await anyio.open_process(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=child_env()
        )
        try:
            url = await _announced(process, ready_prefix, timeout_s)
            yield ServerProcess(name, process, url)
        finally:
            await _stop(process)


def emulator(args: Sequence[str], log_path: Path) -> contextlib.AbstractAsyncContextManager[Any]:
    """`orchestrator emulator --port 0 ARGS` in its own process."""
    argv = [sys.executable, "-m", "orchestrator", "emulator", "--port", "0", *args]
    return server_process("emulator", argv, EMULATOR_READY, log_path)


def sqs_server(log_path: Path) -> contextlib.AbstractAsyncContextManager[Any]:
    """moto's SQS server in its own process."""
    argv = [sys.executable, "-m", "bench.sqs_server"]
    return server_process("sqs", argv, SQS_READY, log_path)


async def run_child(argv: Sequence[str], log_path: Path, *, timeout_s: float) -> dict[str, Any]:
    """Run a measuring child to completion and return the JSON it printed after RESULT_PREFIX."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log:
        process = await anyio.open_process(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            env=child_env(),
        )
        line = ""
        try:
            line = await _announced(process, RESULT_PREFIX, timeout_s)
        except RuntimeError as exc:
            raise RuntimeError(f"{argv[2]}: {exc}; see {log_path}") from None
        finally:
            # A child that has printed its result is exiting: let it, unless it hangs.
            await _stop(process, exit_within_s=30.0 if line else 0.0)
    data: dict[str, Any] = json.loads(line)
    return data
