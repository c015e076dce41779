"""Listening on one of the fleet's Redis channels, for as long as the worker runs, and what a
replica sends on one (`FleetChannel`)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, NotRequired, TypedDict, TypeVar

import structlog
from redis.asyncio import Redis

from orchestrator.clock import Clock, SystemClock
from orchestrator.daemon.fleet.breaker import REDIS_ERRORS, Breaker

T = TypeVar("T")

log = structlog.get_logger("orchestrator.daemon.fleet")


async def listen(
    redis: Redis,
    channel: str,
    deliver: Callable[[Any], Awaitable[None]],
    *,
    what: str,
    resubscribe_s: float,
    clock: Clock,
    subscribed: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Hand each message's data on `channel` to `deliver` until cancelled, subscribing again
    `resubscribe_s` after Redis is lost (logged once as `fleet.<what>_unsubscribed`, then
    `fleet.<what>_subscribed`). Pub/sub keeps no history: what was published meanwhile is lost,
    unless `subscribed`, called after every subscription, catches up with it."""
    lost = False
    while True:
        try:
            async with redis.pubsub() as pubsub:
                await pubsub.subscribe(channel)
                if subscribed is not None:
                    await subscribed()
                if lost:
                    log.info(f"fleet.{what}_subscribed", channel=channel)
                    lost = False
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        await deliver(message["data"])
        except REDIS_ERRORS as error:
            if not lost:
                log.warning(f"fleet.{what}_unsubscribed", error=type(error).__name__)
                lost = True
        await clock.sleep(resubscribe_s)


class ChannelOptions(TypedDict):
    """What every `FleetChannel` is built with, beside its Redis client and channel."""

    worker_id: str
    breaker: Breaker
    resubscribe_s: NotRequired[float]
    clock: NotRequired[Clock | None]


class FleetChannel:
    """One replica's side of a fleet channel: each message is an envelope naming the replica
    that sent it (`origin`), so a replica skips its own."""

    def __init__(
        self,
        redis: Redis,
        *,
        channel: str,
        worker_id: str,
        breaker: Breaker,
        resubscribe_s: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        self._redis = redis
        self.channel = channel
        self.worker_id = worker_id
        self._breaker = breaker
        self._resubscribe_s = resubscribe_s
        self._clock = clock or SystemClock()

    def _envelope(self, name: str, body: str) -> str:
        return json.dumps({"origin": self.worker_id, name: body})

    def _opened(
        self, data: Any, name: str, parse: Callable[[Any], T], *, unreadable: str
    ) -> T | None:
        """What another replica sent under `name` (None for this replica's own, and for an
        unreadable message, logged as `unreadable`)."""
        try:
            envelope = json.loads(data)
            if envelope["origin"] == self.worker_id:
                return None
            return parse(envelope[name])
        except (ValueError, KeyError, TypeError) as error:
            log.warning(unreadable, error=type(error).__name__)
            return None

    async def _listen(
        self,
        deliver: Callable[[Any], Awaitable[None]],
        *,
        what: str,
        subscribed: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        await listen(
            self._redis,
            self.channel,
            deliver,
            what=what,
            resubscribe_s=self._resubscribe_s,
            clock=self._clock,
            subscribed=subscribed,
        )
