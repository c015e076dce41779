"""The reference web backend's peers: the local SQS server, the emulator and a real worker process
that allows the clients' reply queues."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from orchestrator.testing.waiting import eventually
from orchestrator.testing.workers import BRISK, Rig, worker_rig

#: The reply queues the worker allows: the clients' default prefix.
ALLOWED = ["arn:aws:sqs:us-east-1:*:orchestrator-replies-*"]
#: Agents answer within a second or two; calls last long enough to watch them.
EMULATOR = [
    "--agent-delay", "1:2", "--talk-time", "60:60", "--abandon-rate", "0",
    "--max-concurrent-calls", "100", "--seed", "11",
]  # fmt: skip


@contextlib.asynccontextmanager
async def web_peers(
    sqs_url: str, workdir: Path, *, emulator_args: list[str] = EMULATOR
) -> AsyncIterator[Rig]:
    """One worker process, receiving, on fresh queues."""
    settings = {**BRISK, "EVENTS__REPLY_TO_ALLOWED": json.dumps(ALLOWED)}
    async with worker_rig(
        sqs_url, workdir, emulator_args=emulator_args, quotas={}, settings=settings, prefix="web"
    ) as rig:
        [worker] = await rig.pool.start(1)
        await eventually(lambda: worker.receiving, within=60, message="the worker to receive")
        yield rig
