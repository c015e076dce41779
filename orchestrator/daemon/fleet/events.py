"""Contact events for the whole fleet: whichever worker reads an event, every worker hears it.

The contact-events consumer hands each event to `FleetContactEvents.deliver`, which delivers it to
this worker's own watches at once and publishes it on a Redis channel for the others. Each
worker's subscriber (`run`, a worker service) delivers what the others published to its local
sink and skips its own. If Redis is unreachable the event still reaches the local watches; the
other workers' watches find the change by polling, which stays the fallback. Pub/sub keeps no
history: an event published while a subscriber reconnects is not replayed (polling covers it).
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from redis.asyncio import Redis

from orchestrator.clock import Clock, SystemClock
from orchestrator.daemon.fleet.breaker import REDIS_ERRORS, Breaker
from orchestrator.daemon.fleet.pubsub import listen
from orchestrator.engine.contact_events import ContactEvent, ContactEventSink

log = structlog.get_logger("orchestrator.daemon.fleet")


class FleetContactEvents:
    """A `ContactEventSink` that fans events out to every worker of the fleet."""

    def __init__(
        self,
        redis: Redis,
        local: ContactEventSink,
        *,
        channel: str,
        worker_id: str,
        breaker: Breaker,
        resubscribe_s: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        self._redis = redis
        self._local = local
        self.channel = channel
        self.worker_id = worker_id
        self._breaker = breaker
        self._resubscribe_s = resubscribe_s
        self._clock = clock or SystemClock()
        self.published = 0
        self.received = 0

    async def deliver(self, event: ContactEvent) -> None:
        await self._local.deliver(event)
        if not self._breaker.allow():
            return
        payload = json.dumps({"origin": self.worker_id, "event": event.to_json()})
        try:
            await self._redis.publish(self.channel, payload)
        except REDIS_ERRORS as error:
            self._breaker.failed(error)
            return
        self._breaker.succeeded()
        self.published += 1

    async def _received(self, data: Any) -> None:
        try:
            envelope = json.loads(data)
            if envelope["origin"] == self.worker_id:
                return
            event = ContactEvent.from_json(envelope["event"])
        except (ValueError, KeyError, TypeError) as error:
            log.warning("fleet.event_unreadable", error=type(error).__name__)
            return
        self.received += 1
        await self._local.deliver(event)

    async def run(self) -> None:
        """Subscribes until cancelled, subscribing again after Redis comes back."""
        await listen(
            self._redis,
            self.channel,
            self._received,
            what="events",
            resubscribe_s=self._resubscribe_s,
            clock=self._clock,
        )
