"""The peers, each in its own process so their CPU and memory are not the benchmark's: the Connect
emulator (`orchestrator emulator`) and an SQS server (moto); also the measuring children of the
scale and detection scenarios. The process handling is the testing kit's
(`orchestrator.testing.processes`); this module adds the benchmark's fake credentials."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.testing import processes
from orchestrator.testing.processes import RESULT_PREFIX, ServerProcess

from .common import FAKE_AWS_ENV

__all__ = ["RESULT_PREFIX", "ServerProcess", "child_env", "emulator", "run_child", "sqs_server"]


def child_env() -> dict[str, str]:
    """The environment of every child: no orchestrator settings, fake credentials only."""
    return processes.child_env(FAKE_AWS_ENV)


def emulator(
    args: Sequence[str], log_path: Path
) -> contextlib.AbstractAsyncContextManager[ServerProcess]:
    """`orchestrator emulator --port 0 ARGS` in its own process."""
    return processes.emulator_process(args, log_path, env=child_env())


def sqs_server(log_path: Path) -> contextlib.AbstractAsyncContextManager[ServerProcess]:
    """moto's SQS server in its own process."""
    return processes.sqs_server_process(log_path, env=child_env())


async def run_child(argv: Sequence[str], log_path: Path, *, timeout_s: float) -> dict[str, Any]:
    """Run a measuring child to completion and return the JSON it printed after RESULT_PREFIX."""
    return await processes.run_child(argv, log_path, timeout_s=timeout_s, env=child_env())
