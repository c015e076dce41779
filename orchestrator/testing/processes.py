"""Child processes of tests and benchmarks: servers that announce their URL and measuring children
that print one JSON result (worker processes: `orchestrator.testing.workers`).

```python
async with emulator_process(["--seed", "7"], log_path) as emulator:   # its own process
    ...EmulatorControl(emulator.url)...
result = await run_child([sys.executable, "-m", "bench.naive", options], log_path, timeout_s=600)
```

Every child is stopped on the way out, also on cancellation: SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

#: What `orchestrator emulator` prints once it accepts connections (then its URL).
EMULATOR_READY = "Connect emulator listening on "
#: What `sqs_server_process` prints once it accepts connections (then its URL).
SQS_READY = "SQS server listening on "
#: What a measuring child prints before its JSON result (see `run_child`).
RESULT_PREFIX = "BENCH-RESULT "
_MAX_LINE = 1 << 20

_SQS_SERVER = f"""
import signal, sys, threading
from orchestrator.testing.local_sqs import LocalSqsServer
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
def until_stdin_closes():
    sys.stdin.read()
    done.set()
threading.Thread(target=until_stdin_closes, daemon=True).start()
with LocalSqsServer() as server:
    print({SQS_READY!r} + server.url, flush=True)
    done.wait()
"""


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without `ORCHESTRATOR_*` settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(extra or {})
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


async def announced(process: Process, prefix: str, timeout_s: float) -> str:
    """What `process` printed after `prefix` at the start of a stdout line."""
    if process.stdout is None:
        raise ValueError("the process's stdout must be a pipe")
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


async def stop_process(
    process: Process, timeout_s: float = 10.0, *, exit_within_s: float = 0.0
) -> None:
    """Give the process `exit_within_s` to exit by itself, then SIGTERM, then SIGKILL after
    `timeout_s`; shielded from cancellation."""
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


async def _open(
    argv: Sequence[str], stdin: int, log: IO[str], env: Mapping[str, str] | None
) -> Process:
    """`argv` with its stdout piped (to read what it announces), its stderr to `log`."""
    environment = dict(env) if env is not None else child_env()
    return await anyio.open_process(
        list(argv), stdin=stdin, stdout=subprocess.PIPE, stderr=log, env=environment
    )


@contextlib.asynccontextmanager
async def server_process(
    name: str,
    argv: Sequence[str],
    ready_prefix: str,
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
) -> AsyncIterator[ServerProcess]:
    """Start `argv` (stderr to `log_path`), wait for its announcement, stop it on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log:
        # stdin stays open: the SQS server exits when it closes.
        process = await _open(argv, subprocess.PIPE, log, env)
        try:
            url = await announced(process, ready_prefix, timeout_s)
            yield ServerProcess(name, process, url)
        finally:
            await stop_process(process)


def quota_args(quotas: Mapping[str, tuple[float, float]]) -> list[str]:
    """`--quota OPERATION=RATE/BURST` options of `orchestrator emulator`."""
    args: list[str] = []
    for operation, (rate, burst) in quotas.items():
        args += ["--quota", f"{operation}={rate:g}/{burst:g}"]
    return args


def emulator_process(
    args: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None
) -> contextlib.AbstractAsyncContextManager[ServerProcess]:
    """`orchestrator emulator --port 0 ARGS` in its own process."""
    argv = [sys.executable, "-m", "orchestrator", "emulator", "--port", "0", *args]
    return server_process("emulator", argv, EMULATOR_READY, log_path, env=env)


def sqs_server_process(
    log_path: Path, *, env: Mapping[str, str] | None = None
) -> contextlib.AbstractAsyncContextManager[ServerProcess]:
    """moto's SQS server in its own process (its own core, its own GIL)."""
    argv = [sys.executable, "-c", _SQS_SERVER]
    return server_process("sqs", argv, SQS_READY, log_path, env=env)


async def run_child(
    argv: Sequence[str],
    log_path: Path,
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    prefix: str = RESULT_PREFIX,
) -> dict[str, Any]:
    """Run a measuring child to completion and return the JSON it printed after `prefix`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log:
        process = await _open(argv, subprocess.DEVNULL, log, env)
        line = ""
        try:
            line = await announced(process, prefix, timeout_s)
        except RuntimeError as exc:
            raise RuntimeError(f"{' '.join(argv[1:3])}: {exc}; see {log_path}") from None
        finally:
            # A child that has printed its result is exiting: let it, unless it hangs.
            await stop_process(process, exit_within_s=30.0 if line else 0.0)
    data: dict[str, Any] = json.loads(line)
    return data
