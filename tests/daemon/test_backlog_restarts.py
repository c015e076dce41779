"""A backlog drained by three real `orchestrator run` processes while they are restarted: rolling
SIGTERMs and SIGKILLs, each worker replaced at once. The backlog stays in the queue (no worker
holds more unstarted requests than its admission bound), every request ends once, with one
contact, and nothing reaches the dead-letter queue."""

from __future__ import annotations

import functools
import signal
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from orchestrator.testing.emulator import EmulatorControl
from orchestrator.testing.processes import sqs_server_process
from orchestrator.testing.queues import EventFollower, drain_bodies, queue_counts, send_all
from orchestrator.testing.requests import request_body
from orchestrator.testing.worker_logs import admission_bound, most_waiting_to_start
from orchestrator.testing.workers import BRISK, WorkerPool, WorkerProcess, worker_rig
from tests.support import eventually

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(360)]

REQUESTS = 90
START_RATE, START_BURST = 10.0, 5.0
WORKERS = 3
#: (StartWebRTCContact successes reached, signal sent to the oldest running worker).
RESTARTS = [
    (10, signal.SIGTERM),
    (22, signal.SIGKILL),
    (35, signal.SIGTERM),
    (50, signal.SIGTERM),
    (62, signal.SIGKILL),
    (72, signal.SIGTERM),
]
GRACE_PERIOD_S = 5


#: The start quota is what limits the drain: the other operations' are far above their use.
QUOTAS = {"StartWebRTCContact": (START_RATE, START_BURST)} | dict.fromkeys(
    ("DescribeContact", "StartScreenSharing"), (300.0, 300.0)
)
SETTINGS = {
    **BRISK,
    # A SIGKILLed worker's messages come back soon (the heartbeat keeps live ones hidden).
    "QUEUE__VISIBILITY_TIMEOUT_S": 4,
    "CONNECT__QUOTA_SHARE": round(1 / WORKERS, 4),
    "SHUTDOWN__GRACE_PERIOD_S": GRACE_PERIOD_S,
}


async def test_a_backlog_survives_rolling_restarts_and_kills_without_dead_letters(
    tmp_path: Path,
) -> None:
    # Calls outlast a killed worker's visibility timeout: a resumed lifecycle still shares the
    # screen (a shorter call would end first and its request with screen_sharing.skipped).
    emulator_args = [
        "--agent-delay", "0.2:0.6", "--talk-time", "20:30", "--abandon-rate", "0",
        "--max-concurrent-calls", "1000", "--seed", "23",
    ]  # fmt: skip
    requests = [f"backlog-{i:03d}" for i in range(REQUESTS)]
    async with (
        sqs_server_process(tmp_path / "sqs.log") as sqs_server,
        worker_rig(
            sqs_server.url, tmp_path, emulator_args=emulator_args, quotas=QUOTAS,
            settings=SETTINGS, prefix="backlog",
        ) as rig,
    ):  # fmt: skip
        queue, follower = rig.queues.requests, rig.follower
        await send_all(rig.sqs, queue, [request_body(r) for r in requests])
        await rig.pool.start(WORKERS)
        visible_mid_drain = await restart_on_schedule(rig.pool, rig.control, rig.sqs, queue)
        done = await rig.all_final(requests)
        assert done, f"{len(set(follower.finals) & set(requests))} of {REQUESTS} ended"
        await eventually(
            lambda: _is_empty(rig.sqs, queue), within=20, message="the request queue to empty"
        )
        contacts = await rig.control.contacts()
        # Graceful stops end, and cleanly: none hangs in its shutdown.
        assert await rig.pool.stop(GRACE_PERIOD_S + 15) == []
        dead_letters = await drain_bodies(rig.sqs, rig.queues.dead_letters)
    graceful = {w.name: w.exit_code for w in rig.pool.workers if w.signalled == "SIGTERM"}
    assert graceful == dict.fromkeys(graceful, 0)

    check(requests, follower, contacts, dead_letters, rig.pool.workers)
    assert visible_mid_drain[0] > 0, visible_mid_drain  # restarted with a backlog queued


async def restart_on_schedule(
    pool: WorkerPool, control: EmulatorControl, sqs: SQSClient, queue: str
) -> list[int]:
    """Replace the oldest worker at each point of RESTARTS; the messages visible each time."""

    async def starts_reached(count: int) -> bool:
        stats = await control.op_stats("StartWebRTCContact")
        return int(stats["successes"]) >= count

    visible = []
    for count, which in RESTARTS:
        await eventually(
            functools.partial(starts_reached, count),
            within=60,
            interval=0.05,
            message=f"{count} contacts started",
        )
        visible.append((await queue_counts(sqs, queue))[0])
        victim = pool.alive[0]
        # A worker signalled before it handles signals just dies: wait until it is up.
        await eventually(
            victim.receiving, within=30, interval=0.1, message=f"{victim.name} to receive"
        )
        await pool.replace(which, victim)
    return visible


def check(
    requests: list[str],
    follower: EventFollower,
    contacts: list[dict[str, Any]],
    dead_letters: list[str],
    workers: list[WorkerProcess],
) -> None:
    # Nothing dead-lettered; every request ended once, with its screen shared.
    assert dead_letters == []
    finals: dict[str, set[str]] = {}
    final_types: dict[str, set[str]] = {}
    for event in follower.events:
        if event.get("final"):
            finals.setdefault(event["request_id"], set()).add(event["id"])
            final_types.setdefault(event["request_id"], set()).add(event["type"])
    assert set(finals) == set(requests)
    assert {r: ids for r, ids in finals.items() if len(ids) != 1} == {}
    assert {r: t for r, t in final_types.items() if t != {"screen_sharing.started"}} == {}
    # One contact per request in the emulator's ground truth.
    per_token = Counter(c["ClientToken"] for c in contacts)
    assert len(per_token) == REQUESTS and set(per_token.values()) == {1}, per_token
    # No worker held more unstarted messages than its admission bound.
    for child in workers:
        records = child.records()
        bound = admission_bound(records)
        assert bound < REQUESTS // WORKERS  # the bound, not the backlog, limits what is held
        held = most_waiting_to_start(records)
        print(f"{child.name}: held at most {held} unstarted messages (bound {bound})")
        assert held <= bound, f"{child.name} held {held} unstarted messages, bound {bound}"


async def _is_empty(sqs: SQSClient, queue: str) -> bool:
    return await queue_counts(sqs, queue) == (0, 0)
