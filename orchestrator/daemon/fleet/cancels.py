"""Cancels for the whole fleet: tombstones in Redis, and a notice to the replica that holds the
lifecycle.

A cancel is received by whichever replica SQS hands it to. That replica records the tombstone
(`SET <prefix>:tombstone:<RequestId> <json> EX <ttl>`), which every replica asks for before
every start attempt (a Redis GET), and publishes a notice on `<prefix>:cancels`: the replica
holding the lifecycle acts at once (a request waiting to start is withdrawn, a contact waiting
for an agent is stopped). If Redis is unreachable (or the breaker is open) the tombstone is not
recorded and the cancel is not acknowledged: the message comes back, so no cancel is lost. A
lookup that fails answers "no tombstone" (a start is not held up by Redis; the cancel it would
have found is not acknowledged either, and acts once it comes back). Pub/sub keeps no history:
a replica that (re)subscribes looks up the tombstones of the requests it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Unpack

from redis.asyncio import Redis

from orchestrator.daemon.fleet.breaker import REDIS_ERRORS
from orchestrator.daemon.fleet.pubsub import ChannelOptions, FleetChannel
from orchestrator.engine.cancellation import Tombstone, TombstoneUnrecorded


class FleetTombstones(FleetChannel):
    """`Tombstones` in Redis, with the fleet's notice of each one (`notify`, `run`)."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        ttl_s: float,
        **options: Unpack[ChannelOptions],
    ) -> None:
        super().__init__(redis, channel=f"{prefix}:cancels", **options)
        self._key = f"{prefix}:tombstone:"
        self._ttl_s = max(1, round(ttl_s))

    async def record(self, tombstone: Tombstone) -> None:
        if not self._breaker.allow():
            raise TombstoneUnrecorded("Redis is unreachable (the fleet's breaker is open)")
        try:
            # NX: the first cancel's time and contact stay (a second cancel changes nothing).
            key = self._key + tombstone.request_id
            await self._redis.set(key, tombstone.to_json(), ex=self._ttl_s, nx=True)
        except REDIS_ERRORS as error:
            self._breaker.failed(error)
            raise TombstoneUnrecorded(f"Redis: {type(error).__name__}") from error
        self._breaker.succeeded()

    async def lookup(self, request_id: str) -> Tombstone | None:
        if not self._breaker.allow():
            return None
        try:
            found = await self._redis.get(self._key + request_id)
        except REDIS_ERRORS as error:
            self._breaker.failed(error)
            return None
        self._breaker.succeeded()
        return None if found is None else Tombstone.from_json(found)

    async def notify(self, tombstone: Tombstone) -> None:
        """Tell the other replicas; `TombstoneUnrecorded` when Redis cannot (the cancel comes
        back and is told again)."""
        payload = self._envelope("tombstone", tombstone.to_json())
        try:
            await self._redis.publish(self.channel, payload)
        except REDIS_ERRORS as error:
            self._breaker.failed(error)
            raise TombstoneUnrecorded(f"Redis: {type(error).__name__}") from error

    async def run(
        self, noticed: Callable[[Tombstone], None], held: Callable[[], Iterable[str]]
    ) -> None:
        """Hands the other replicas' notices to `noticed` until cancelled, subscribing again
        after Redis comes back. A notice published while this replica was not subscribed is
        caught up with: after every subscription the tombstones of the requests `held` here
        are looked up."""

        async def catch_up() -> None:
            for request_id in list(held()):
                tombstone = await self.lookup(request_id)
                if tombstone is not None:
                    noticed(tombstone)

        async def deliver(data: Any) -> None:
            tombstone = self._opened(
                data, "tombstone", Tombstone.from_json, unreadable="fleet.cancel_unreadable"
            )
            if tombstone is not None:
                noticed(tombstone)

        await self._listen(deliver, what="cancels", subscribed=catch_up)
