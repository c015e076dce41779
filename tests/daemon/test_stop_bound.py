"""A stop ends within its bound counted from the signal (`stopping.py`), the pending long poll
included: a real `orchestrator run` process, SIGTERMed just after a 20-second long poll began
with lifecycles in flight, exits within `stop_bound_s(grace_period_s)` and hands their messages
back."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from orchestrator.daemon.stopping import stop_bound_s
from orchestrator.testing.processes import sqs_server_process
from orchestrator.testing.queues import queue_counts, send_all
from orchestrator.testing.requests import request_body
from orchestrator.testing.workers import BRISK, worker_rig
from tests.support import eventually

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

#: SQS's longest long poll: the worst moment to stop is just after one began.
WAIT_TIME_S = 20
#: A grace period that covers the poll (its cut-off included), as the deploy files' does: the
#: bound is then the grace period + 5 s.
GRACE_PERIOD_S = 26
REQUESTS = 4
QUOTAS = dict.fromkeys(
    ("StartWebRTCContact", "DescribeContact", "StartScreenSharing"), (50.0, 50.0)
)


async def test_sigterm_just_after_a_long_poll_began_exits_within_the_grace_bound(
    tmp_path: Path,
) -> None:
    # Nobody answers the calls: every lifecycle is still watching when the signal comes.
    emulator_args = ["--agent-delay", "600:600", "--abandon-rate", "0", "--seed", "5"]
    settings = {
        **BRISK,
        "QUEUE__WAIT_TIME_S": WAIT_TIME_S,
        "SHUTDOWN__GRACE_PERIOD_S": GRACE_PERIOD_S,
    }
    ids = [f"stop-{i}" for i in range(REQUESTS)]
    async with (
        sqs_server_process(tmp_path / "sqs.log") as sqs_server,
        worker_rig(
            sqs_server.url, tmp_path, emulator_args=emulator_args, quotas=QUOTAS,
            settings=settings, prefix="stop",
        ) as rig,
    ):  # fmt: skip
        await send_all(rig.sqs, rig.queues.requests, [request_body(r) for r in ids])
        (worker,) = await rig.pool.start(1)

        def all_started() -> bool:
            started = {
                e["request_id"] for e in rig.follower.events if e["type"] == "contact.started"
            }
            return started == set(ids)

        # Every message was taken by one receive, so the next long poll (an empty queue: the
        # whole 20 s) began as the contacts started.
        await eventually(all_started, within=60, message="every contact started")
        worker.signal(signal.SIGTERM)
        bound = stop_bound_s(GRACE_PERIOD_S, WAIT_TIME_S)
        assert bound == GRACE_PERIOD_S + 5
        assert await worker.wait(bound + 1) == 0
        assert worker.stop_s is not None
        assert worker.stop_s <= bound
        # The lifecycles ran the whole grace period (counted from the signal), then went back.
        assert worker.stop_s >= GRACE_PERIOD_S - 1
        events = [r["event"] for r in worker.records()]
        assert "worker.grace_period_over" in events
        assert not [e for e in rig.follower.events if e.get("final")]
        await eventually(
            lambda: _all_back(rig.sqs, rig.queues.requests),
            within=30,
            message="every message handed back",
        )


async def _all_back(sqs: SQSClient, queue: str) -> bool:
    return await queue_counts(sqs, queue) == (REQUESTS, 0)
