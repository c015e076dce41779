"""Contact events for the whole fleet: whichever worker reads an event, every worker hears it.

The contact-events consumer hands each event to `FleetContactEvents.deliver`, which delivers it to
this worker's own watches at once and publishes it on a Redis channel for the others. Each
worker's subscriber (`run`, a worker service) delivers what the others published to its local
sink and skips its own. If Redis is unreachable the event still reaches the local watches; the
other workers' watches find the change by polling, which stays the fallback. Pub/sub keeps no
history: an event published while a subscriber reconnects is not replayed (polling covers it).
"""

from __future__ import annotations

from typing import Any, Unpack

from redis.asyncio import Redis

from orchestrator.daemon.fleet.breaker import REDIS_ERRORS
from orchestrator.daemon.fleet.pubsub import ChannelOptions, FleetChannel
from orchestrator.engine.contact_events import ContactEvent, ContactEventSink


class FleetContactEvents(FleetChannel):
    """A `ContactEventSink` that fans events out to every worker of the fleet."""

    def __init__(
        self,
        redis: Redis,
        local: ContactEventSink,
        *,
        channel: str,
        **options: Unpack[ChannelOptions],
    ) -> None:
        super().__init__(redis, channel=channel, **options)
        self._local = local
        self.published = 0
        self.received = 0

    async def deliver(self, event: ContactEvent) -> None:
        await self._local.deliver(event)
        if not self._breaker.allow():
            return
        payload = self._envelope("event", event.to_json())
        try:
            await self._redis.publish(self.channel, payload)
        except REDIS_ERRORS as error:
            self._breaker.failed(error)
            return
        self._breaker.succeeded()
        self.published += 1

    async def _received(self, data: Any) -> None:
        event = self._opened(
            data, "event", ContactEvent.from_json, unreadable="fleet.event_unreadable"
        )
        if event is None:
            return
        self.received += 1
        await self._local.deliver(event)

    async def run(self) -> None:
        """Subscribes until cancelled, subscribing again after Redis comes back."""
        await self._listen(self._received, what="events")
