"""A fleet of real `orchestrator run` processes sharing one StartWebRTCContact quota through a
real redis-server, while workers join and leave and Redis dies and comes back."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orchestrator.testing.processes import sqs_server_process
from orchestrator.testing.queues import EventFollower, send_all
from orchestrator.testing.redis import RedisServer
from orchestrator.testing.requests import request_body
from orchestrator.testing.workers import BRISK, worker_rig
from tests.support import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(360)]

START_RATE, START_BURST = 20.0, 20.0
REQUESTS = 200
PASSWORD = "fleet-test-password-7"


#: The shared start quota is what is measured: the other operations' are far above their use.
QUOTAS = {"StartWebRTCContact": (START_RATE, START_BURST)} | dict.fromkeys(
    ("DescribeContact", "StartScreenSharing"), (200.0, 200.0)
)
SETTINGS = {
    **BRISK,
    # Hold enough received requests that a slow receive on a loaded machine does not limit
    # starts: the budget is what is measured here.
    "QUEUE__MAX_WAITING_TO_START": 60,
    "QUEUE__VISIBILITY_TIMEOUT_S": 10,
    "FLEET__HEARTBEAT_INTERVAL_S": 0.5,
    "FLEET__HEARTBEAT_TTL_S": 3,
    "FLEET__BREAKER_RESET_S": 1,
    "SHUTDOWN__GRACE_PERIOD_S": 5,
}


def busiest_second(stamps: list[float]) -> int:
    stamps = sorted(stamps)
    best, low = 0, 0
    for high, stamp in enumerate(stamps):
        while stamp - stamps[low] >= 1.0:
            low += 1
        best = max(best, high - low + 1)
    return best


async def test_a_fleet_shares_one_start_quota_through_joins_leaves_and_a_redis_outage(
    tmp_path: Path,
) -> None:
    emulator_args = [
        "--agent-delay", "0.2:0.6", "--talk-time", "0.3:0.8", "--abandon-rate", "0",
        "--max-concurrent-calls", "1000", "--seed", "11",
    ]  # fmt: skip
    requests = [f"fleet-{i:04d}" for i in range(REQUESTS)]
    marks: list[tuple[int, float]] = []
    # moto in its own process (its own core and GIL): receiving must not be what limits starts.
    with RedisServer(tmp_path, password=PASSWORD) as redis:
        async with (
            sqs_server_process(tmp_path / "sqs.log") as sqs_server,
            worker_rig(
                sqs_server.url, tmp_path, emulator_args=emulator_args, quotas=QUOTAS,
                settings={**SETTINGS, "FLEET__REDIS_URL": redis.url}, prefix="fleet",
            ) as rig,
        ):  # fmt: skip
            follower, pool = rig.follower, rig.pool

            async def started() -> int:
                return int((await rig.control.op_stats("StartWebRTCContact"))["successes"])

            async def reached(count: int) -> None:
                await eventually(lambda: _at_least(started(), count), within=40, interval=0.1)
                marks.append((count, time.time()))

            await send_all(rig.sqs, rig.queues.requests, [request_body(r) for r in requests])
            await pool.start(2)
            await reached(40)
            await pool.start()  # a worker joins
            await reached(80)
            redis.kill()  # Redis dies: every worker falls back to a third of the quota
            await reached(140)
            redis.start()  # and comes back, empty, on the same port
            await reached(170)
            pool.signal(pool.workers[0], signal.SIGTERM)  # a worker leaves gracefully
            done = await rig.all_final(requests)
            assert done, f"{len(follower.finals)} of {REQUESTS} requests ended"
            stats = await rig.control.op_stats("StartWebRTCContact")
            contacts = await rig.control.contacts()

    check(follower, stats, contacts, requests, marks)
    logs = "".join(w.log_text() for w in pool.workers)
    assert "fleet.degraded" in logs and "fleet.recovered" in logs
    assert PASSWORD not in logs


def check(
    follower: EventFollower,
    stats: dict[str, int],
    contacts: list[dict[str, Any]],
    requests: list[str],
    marks: list[tuple[int, float]],
) -> None:
    # Nothing lost, one final outcome and one contact per request.
    assert set(follower.finals) == set(requests)
    assert all(len(types) == 1 for types in follower.finals.values())
    per_token = Counter(c["ClientToken"] for c in contacts)
    assert len(contacts) == REQUESTS and set(per_token.values()) == {1}
    # Connect barely throttled the fleet, which started at close to the quota throughout.
    assert stats["throttled"] <= 5, stats
    created = sorted(float(c["CreatedAt"]) for c in contacts)
    assert busiest_second(created) <= START_RATE + START_BURST
    per_second = Counter(int(t - created[0]) for t in created)
    timeline = [per_second[i] for i in range(int(created[-1] - created[0]) + 1)]
    at = [(count, round(when - created[0], 1)) for count, when in marks]
    print(f"starts per second {timeline}; marks {at}; StartWebRTCContact {stats}")
    assert REQUESTS / (created[-1] - created[0]) >= 0.6 * START_RATE, (timeline, at, stats)


async def _at_least(value: object, count: int) -> bool:
    return int(await value) >= count  # type: ignore[misc]
