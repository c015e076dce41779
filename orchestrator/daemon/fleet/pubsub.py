"""Listening on one of the fleet's Redis channels, for as long as the worker runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from redis.asyncio import Redis

from orchestrator.clock import Clock
from orchestrator.daemon.fleet.breaker import REDIS_ERRORS

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
