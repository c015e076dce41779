"""The fleet budget against a real redis-server: shared quota, one reaction to 429s, fallback
to a local share while Redis is away, and back by itself."""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import time
from collections.abc import Iterator

import anyio
import pytest
import structlog
from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection
from structlog.testing import capture_logs

from orchestrator.connect.operations import Operation
from orchestrator.daemon.fleet import redis_client
from orchestrator.daemon.logs import configure_logging
from orchestrator.daemon.settings import Settings
from orchestrator.testing.redis import RedisServer
from tests.fleet.members import BURST, HEADROOM, RATE, START, busiest_second, members, spend
from tests.support import eventually

pytestmark = pytest.mark.timeout(60)


async def test_three_workers_together_stay_within_one_quota(redis_server: RedisServer) -> None:
    async with members(redis_server.url, 3) as fleet:
        stamps = await spend(fleet, 2.5)
    # The whole quota, not three: at most a burst plus the rate over any second or the run.
    assert len(stamps) <= RATE * 2.5 + BURST + 1
    assert busiest_second(stamps) <= RATE + BURST + 1
    assert len(stamps) >= RATE * 2.5 * 0.85  # and the fleet uses it
    for member in fleet:
        assert member.degraded == 0


async def test_waiters_in_one_worker_go_by_priority(redis_server: RedisServer) -> None:
    async with members(redis_server.url, 1, min_workers=1) as (member,):
        bucket = member.fleet.budget[Operation.START_SCREEN_SHARING]  # 2/s: slow enough to queue
        order: list[float] = []

        async def call(priority: float) -> None:
            await bucket.acquire(priority)
            order.append(priority)

        for _ in range(4):  # the burst (5 - 1)
            await bucket.acquire()
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, 0.0)  # takes the turn, waits for Redis's next slot
            await eventually(lambda: bucket.snapshot()[2] == 1, within=5)
            for priority in (5.0, 1.0, 3.0):
                tg.start_soon(call, priority)
            await eventually(lambda: bucket.snapshot()[2] == 4, within=5)
    assert order == [0.0, 1.0, 3.0, 5.0]


async def test_throttles_seen_by_every_worker_lower_the_shared_ceiling_once(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with members(redis_server.url, 3) as fleet:
        for member in fleet:
            member.fleet.budget[START].on_throttle()
        async with anyio.create_task_group() as tg:
            for member in fleet:
                tg.start_soon(member.fleet.budget[START].acquire)
        factor = float(
            await redis.hget("orchestrator:us-east-1:quota:StartWebRTCContact", "factor") or 0
        )
        assert factor == pytest.approx(0.5, abs=0.02)
        rates = [member.fleet.budget[START].snapshot()[1] for member in fleet]
        assert rates == pytest.approx([RATE * 0.5] * 3, abs=0.5)


async def test_without_redis_each_worker_spends_its_share_and_comes_back_by_itself(
    redis_server: RedisServer, redis: Redis
) -> None:
    async with members(redis_server.url, 2) as fleet:
        for member in fleet:
            await member.fleet.membership.beat()
        assert await fleet[0].fleet.membership.beat() == 2
        worker = fleet[0]
        assert worker.metrics.registry.get_sample_value("orchestrator_fleet_workers_seen") == 2

        redis_server.kill()
        with capture_logs() as logs:
            stamps = await spend([worker], 2.0)
        # Nothing refused; half the quota (two workers were seen), no burst.
        assert len(stamps) <= RATE / 2 * 2.0 + 1 + 1
        assert len(stamps) >= RATE / 2 * 2.0 * 0.8
        assert worker.degraded == 1
        report = worker.readiness.snapshot()["fleet"]
        assert report.degraded and report.ok and worker.readiness.ready
        assert "redis unreachable" in (report.reason or "")
        assert [e["event"] for e in logs if e["event"].startswith("fleet.")] == ["fleet.degraded"]

        redis_server.start()  # same port, empty: the budget starts afresh
        with capture_logs() as logs:

            async def shared_again() -> bool:
                await worker.fleet.budget[START].acquire()
                return worker.degraded == 0

            await eventually(shared_again, within=10, message="the fleet budget to come back")
        assert "fleet.recovered" in [e["event"] for e in logs]
        assert worker.readiness.snapshot()["fleet"].degraded is False
        assert await redis.exists("orchestrator:us-east-1:quota:StartWebRTCContact")


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers (a hung Redis)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


async def test_a_hung_redis_costs_a_call_at_most_a_second_then_nothing() -> None:
    with silent_server() as url:
        async with members(url, 1, breaker_failures=2, breaker_reset_s=30) as (member,):
            bucket = member.fleet.budget[Operation.DESCRIBE_CONTACT]
            started = time.monotonic()
            await bucket.acquire()
            first = time.monotonic() - started
            await bucket.acquire()  # the second failure opens the breaker
            started = time.monotonic()
            for _ in range(5):
                await bucket.acquire()  # the local share (9.7/s): no Redis call at all
            rest = time.monotonic() - started
    assert first < 1.2  # a 0.5 s read timeout, no retry after a timeout
    # The local share paces them (about 0.5 s for five); a Redis call each would add its 0.5 s
    # timeout to every one of them (2.5 s and more): a loaded machine stays far below that.
    assert rest < 5 / (10.0 * (1 - HEADROOM)) + 1.0
    assert member.degraded == 1


def test_the_client_fails_fast() -> None:
    async def options() -> dict[str, object]:
        async with redis_client("redis://127.0.0.1:1/0", timeout_s=0.5) as client:
            return dict(client.connection_pool.connection_kwargs)

    kwargs = anyio.run(options)
    assert kwargs["socket_timeout"] == 0.5
    assert kwargs["socket_connect_timeout"] == 0.5
    retry = kwargs["retry"]
    assert retry.get_retries() == 1  # type: ignore[attr-defined]


def test_rediss_urls_connect_over_tls_with_the_password_from_the_url() -> None:
    async def pool() -> tuple[type, dict[str, object]]:
        url = "rediss://fleet:pa55@redis.example.internal:6380/2"
        async with redis_client(url) as client:
            p = client.connection_pool
            return p.connection_class, dict(p.connection_kwargs)

    connection_class, kwargs = anyio.run(pool)
    assert connection_class is SSLConnection
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("fleet", "pa55", 2)


async def test_the_redis_password_never_reaches_the_logs(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from pathlib import Path  # noqa: PLC0415

    password = "s3cret-fleet-pass"
    server = RedisServer(Path(str(tmp_path)), password=password)
    server.start()
    stream = io.StringIO()
    configure_logging(level="DEBUG", json_output=True, stream=stream)
    try:
        async with members(server.url, 1) as (member,):
            await member.fleet.membership.beat()
            await member.fleet.budget[START].acquire()
            server.kill()
            for _ in range(4):
                await member.fleet.budget[START].acquire()
                await member.fleet.membership.beat()
            assert member.degraded == 1
        settings = Settings(queue={"url": "http://q"}, fleet={"redis_url": server.url})
        structlog.get_logger("test").info("settings", settings=settings.masked())
    finally:
        server.kill()
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    written = stream.getvalue() + capsys.readouterr().out + capsys.readouterr().err
    assert "fleet.degraded" in written
    assert "***@127.0.0.1" in written
    assert password not in written


async def test_the_fallback_divides_by_the_largest_fleet_seen_within_a_heartbeat_ttl(
    redis_server: RedisServer,
) -> None:
    async with members(redis_server.url, 3, heartbeat_ttl_s=10.0) as fleet:
        for member in fleet:
            await member.fleet.membership.beat()
        worker = fleet[0]
        assert await worker.fleet.membership.beat() == 3
        redis_server.restart()  # back empty: this worker's next beat sees only itself
        assert await worker.fleet.membership.beat() == 1
        assert worker.fleet.budget.workers == 3
        assert worker.fleet.budget[START].fallback.target_rate == pytest.approx(RATE / 3)
