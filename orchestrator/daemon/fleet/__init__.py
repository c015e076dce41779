"""Fleet mode: replicas share one account's Connect quotas and contact events through Redis.

`redis_client` opens the client (short timeouts, one quick retry); `Fleet.build` puts the parts
together around it: the shared budget (`budget.py`, its script in `gcra.py`), the heartbeats
(`membership.py`), the contact-events fan-out (`events.py`), cancels' tombstones and notices
(`cancels.py`) and the breaker that sends all of
them to their local fallbacks while Redis is unreachable (`breaker.py`).
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from orchestrator.clock import Clock
from orchestrator.connect.operations import Operation, Quota
from orchestrator.daemon.cancels import Cancels, tombstone_ttl_s
from orchestrator.daemon.fleet.breaker import Breaker
from orchestrator.daemon.fleet.budget import FleetBudget
from orchestrator.daemon.fleet.cancels import FleetTombstones
from orchestrator.daemon.fleet.events import FleetContactEvents
from orchestrator.daemon.fleet.membership import Membership, new_worker_id
from orchestrator.daemon.fleet.policy import FleetPolicy
from orchestrator.daemon.fleet.traced import TracedRedis
from orchestrator.daemon.readiness import ReadinessBoard
from orchestrator.engine.contact_events import ContactEventSink
from orchestrator.engine.lifecycle import LifecycleEngine
from orchestrator.metrics import Metrics

__all__ = ["Fleet", "FleetBudget", "FleetContactEvents", "FleetPolicy", "redis_client"]


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
    _notices: Callable[[], Coroutine[Any, Any, None]] | None = None

    @classmethod
    def build(
        cls,
        redis: Redis,
        policy: FleetPolicy,
        *,
        key_prefix: str,
        region: str,
        quotas: Mapping[Operation, Quota],
        headroom: float,
        metrics: Metrics,
        readiness: ReadinessBoard,
        worker_id: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> Fleet:
        """Keys and channels live under `<key_prefix>:<region>`: one budget per account and
        Region (workers of another account need another prefix or another Redis). `clock` times
        the breaker, the local shares and the heartbeats (the shared budget keeps Redis's)."""
        prefix = f"{key_prefix}:{region}"
        worker_id = worker_id or new_worker_id()
        breaker = Breaker(policy, metrics=metrics, readiness=readiness, clock=clock)
        budget = FleetBudget(
            redis, quotas, prefix=prefix, policy=policy, breaker=breaker, headroom=headroom,
            clock=clock, rng=rng,
        )  # fmt: skip
        membership = Membership(
            redis,
            key=f"{prefix}:workers",
            policy=policy,
            breaker=breaker,
            listener=budget,
            metrics=metrics,
            worker_id=worker_id,
            clock=clock,
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

    def cancels(self, engine: LifecycleEngine, request_ttl_s: float) -> Cancels:
        """The worker's cancels with their tombstones in Redis; the other replicas' notices
        are listened to among `services`."""
        stones = FleetTombstones(
            self.redis,
            prefix=self.prefix,
            ttl_s=tombstone_ttl_s(request_ttl_s),
            worker_id=self.worker_id,
            breaker=self.breaker,
        )
        cancels = Cancels(engine, request_ttl_s, tombstones=stones, notify=stones.notify)
        self._notices = functools.partial(stones.run, cancels.noticed, cancels.held)
        return cancels

    async def _listen_to_cancels(self) -> None:
        """The other replicas' cancel notices (nothing to listen to without `cancels`)."""
        if self._notices is not None:
            await self._notices()

    @property
    def services(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        """Loops the worker runs for its whole life: the heartbeat, the cancel notices'
        listener, and the contact-events subscriber once `contact_events` was called."""
        loops: list[Callable[[], Coroutine[Any, Any, None]]] = [
            self.membership.run,
            self._listen_to_cancels,
        ]
        if self.events is not None:
            loops.append(self.events.run)
        return loops
