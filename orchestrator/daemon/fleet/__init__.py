"""Fleet mode: replicas share one account's Connect quotas and contact events through Redis.

`redis_client` opens the client (short timeouts, one quick retry); `Fleet.build` puts the parts
together around it: the shared budget (`budget.py`, its script in `gcra.py`), the heartbeats
(`membership.py`), the contact-events fan-out (`events.py`) and the breaker that sends all of
them to their local fallbacks while Redis is unreachable (`breaker.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from orchestrator.connect.operations import Operation, Quota
from orchestrator.daemon.fleet.breaker import Breaker
from orchestrator.daemon.fleet.budget import FleetBudget
from orchestrator.daemon.fleet.events import FleetContactEvents
from orchestrator.daemon.fleet.membership import Membership, new_worker_id
from orchestrator.daemon.fleet.traced import TracedRedis
from orchestrator.daemon.readiness import ReadinessBoard
from orchestrator.daemon.settings import FleetSettings
from orchestrator.engine.contact_events import ContactEventSink
from orchestrator.metrics import Metrics

__all__ = ["Fleet", "FleetBudget", "FleetContactEvents", "redis_client"]


@contextlib.asynccontextmanager
async def redis_client(url: str, *, timeout_s: float = 0.5) -> AsyncIterator[Redis]:
    """A client for `url` (`redis://` or `rediss://`, AUTH in the user info) that fails fast.

    Connect and read timeouts of `timeout_s`; one immediate retry after a connection error (a
    pooled connection that Redis closed while restarting), none after a timeout, which already
    cost `timeout_s`. redis-py's defaults would stall a Connect call for seconds."""
    client = TracedRedis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        retry_on_timeout=False,
        health_check_interval=0,
    )
    try:
        yield client
    finally:
        await client.aclose()


@dataclass
class Fleet:
    """This worker's membership of the fleet, built around one Redis client."""

    redis: Redis
    prefix: str
    worker_id: str
    breaker: Breaker
    budget: FleetBudget
    membership: Membership
    events: FleetContactEvents | None = None

    @classmethod
    def build(
        cls,
        redis: Redis,
        settings: FleetSettings,
        *,
        region: str,
        quotas: Mapping[Operation, Quota],
        headroom: float,
        metrics: Metrics,
        readiness: ReadinessBoard,
        worker_id: str | None = None,
    ) -> Fleet:
        """Keys and channels live under `<key_prefix>:<region>`: one budget per account and
        Region (workers of another account need another prefix or another Redis)."""
        prefix = f"{settings.key_prefix}:{region}"
        worker_id = worker_id or new_worker_id()
        breaker = Breaker(
            failures=settings.breaker_failures,
            reset_s=settings.breaker_reset_s,
            metrics=metrics,
            readiness=readiness,
        )
        budget = FleetBudget(
            redis,
            quotas,
            prefix=prefix,
            breaker=breaker,
            headroom=headroom,
            workers=settings.min_workers,
        )
        membership = Membership(
            redis,
            key=f"{prefix}:workers",
            breaker=breaker,
            listener=budget,
            worker_id=worker_id,
            interval_s=settings.heartbeat_interval_s,
            ttl_s=settings.heartbeat_ttl_s,
            min_workers=settings.min_workers,
            metrics=metrics,
        )
        return cls(redis, prefix, worker_id, breaker, budget, membership)

    def contact_events(self, local: ContactEventSink) -> FleetContactEvents:
        """The sink the contact-events consumer delivers to (its subscriber joins `services`)."""
        self.events = FleetContactEvents(
            self.redis,
            local,
            channel=f"{self.prefix}:contact-events",
            worker_id=self.worker_id,
            breaker=self.breaker,
        )
        return self.events

    @property
    def services(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """Loops the worker runs for its whole life: the heartbeat, and the contact-events
        subscriber once `contact_events` was called."""
        loops: list[Callable[[], Coroutine[Any, Any, None]]] = [self.membership.run]
        if self.events is not None:
            loops.append(self.events.run)
        return loops
