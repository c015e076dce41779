"""Who is in the fleet: each worker's heartbeat, and the count the local fallback divides by.

The members are a sorted set of worker ids scored by when each heartbeat expires, on the server's
clock. Every `heartbeat_interval_s` a worker renews its own entry, drops the expired ones and reads
how many remain, in one script call. The count sizes the local share (`FleetBudget.set_workers`,
through `FleetSize`: the size last known is kept through an outage and for one TTL after it) and
the `fleet_workers` gauge. The heartbeat is also the breaker's probe when nothing else calls
Redis. A worker that leaves removes its entry; one that dies expires after `heartbeat_ttl_s`.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any, Protocol, cast

import anyio
import structlog
from redis.asyncio import Redis

from orchestrator.clock import Clock, SystemClock
from orchestrator.daemon.fleet.breaker import REDIS_ERRORS, Breaker
from orchestrator.daemon.fleet.policy import FleetPolicy, FleetSize
from orchestrator.metrics import Metrics

log = structlog.get_logger("orchestrator.daemon.fleet")

#: KEYS[1] the members set; ARGV worker id, ttl_ms. Returns the number of live members.
HEARTBEAT_SCRIPT = """
redis.replicate_commands()
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return redis.call('ZCARD', KEYS[1])
"""


def new_worker_id() -> str:
    """Host, process and a random suffix: unique, and readable in `ZRANGE`."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class FleetSizeListener(Protocol):
    def set_workers(self, workers: int) -> None: ...


class Membership:
    """This worker's heartbeat (`run`, a worker service) and the fleet size it reads back."""

    def __init__(
        self,
        redis: Redis,
        *,
        key: str,
        policy: FleetPolicy,
        breaker: Breaker,
        listener: FleetSizeListener,
        metrics: Metrics,
        worker_id: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._redis = redis
        self._script = redis.register_script(HEARTBEAT_SCRIPT)
        self.key = key
        self.worker_id = worker_id or new_worker_id()
        self._breaker = breaker
        self._listener = listener
        self._interval_s = policy.heartbeat_interval_s
        self._ttl_ms = int(policy.heartbeat_ttl_s * 1000)
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self.workers = 1
        #: What the local share divides by: kept through an outage (see `FleetSize`).
        self.size = FleetSize(policy.heartbeat_ttl_s, policy.min_workers)
        self._metrics.fleet_workers.set(1)

    async def beat(self) -> int | None:
        """Renew this worker's entry; the live count, or None when Redis did not answer."""
        if not self._breaker.allow():
            self.size.lost()
            return None
        try:
            reply = await self._script(keys=[self.key], args=[self.worker_id, self._ttl_ms])
        except REDIS_ERRORS as error:
            self._breaker.failed(error)
            self.size.lost()
            return None
        self._breaker.succeeded()
        workers = max(1, int(cast(Any, reply)))
        if workers != self.workers:
            log.info("fleet.workers_changed", workers=workers, previous=self.workers)
        self.workers = workers
        self._listener.set_workers(self.size.seen(self._clock.monotonic(), workers))
        self._metrics.fleet_workers.set(workers)
        return workers

    async def run(self) -> None:
        """Heartbeats until cancelled; then this worker leaves the set (best effort)."""
        try:
            while True:
                await self.beat()
                await self._clock.sleep(self._interval_s)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                await self.leave()

    async def leave(self) -> None:
        try:
            await self._redis.zrem(self.key, self.worker_id)
        except REDIS_ERRORS:
            log.info("fleet.leave_failed", worker_id=self.worker_id)
