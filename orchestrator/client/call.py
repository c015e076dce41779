"""A handle on one submitted call: await its connection data, follow its events, cancel it.

The client's reply poller delivers the call's events to its handle (`_deliver`), duplicates
dropped by event id; the handle keeps them in arrival order. Waiting is on a condition with a
deadline: each stage raises `CallTimeout` naming itself when it does not arrive in time.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio

from orchestrator.client.events import CallEnded, CallEvent, CallTimeout
from orchestrator.engine.events import EventType

#: `await cancel(call)`: sends the cancel request for `call` (the client's).
Canceller = Callable[["Call"], Awaitable[None]]


class Call:
    """One call request, submitted through a `CallClient` (which makes the handles)."""

    def __init__(self, request_id: str, cancel: Canceller) -> None:
        self.request_id = request_id
        self._cancel = cancel
        self._events: list[CallEvent] = []
        self._ids: set[str] = set()
        self._arrived = anyio.Event()

    # -- what the poller does ------------------------------------------------------------------

    def _deliver(self, event: CallEvent) -> bool:
        """Add `event` (False: a duplicate, dropped)."""
        if event.id in self._ids:
            return False
        self._ids.add(event.id)
        self._events.append(event)
        self._arrived.set()
        self._arrived = anyio.Event()
        return True

    # -- what the caller sees ------------------------------------------------------------------

    @property
    def history(self) -> list[CallEvent]:
        """The events so far, in arrival order."""
        return list(self._events)

    @property
    def status(self) -> str | None:
        """The type of the latest event (None before the first)."""
        return self._events[-1].type if self._events else None

    @property
    def final(self) -> CallEvent | None:
        """The final event, once it arrived."""
        return next((e for e in self._events if e.final), None)

    @property
    def contact_id(self) -> str | None:
        return next((e.contact_id for e in self._events if e.contact_id), None)

    @property
    def instance_id(self) -> str | None:
        return next((e.instance_id for e in self._events if e.instance_id), None)

    def _nth(self, index: int) -> CallEvent | None:
        return self._events[index] if index < len(self._events) else None

    def _first(self, type_: str) -> CallEvent | None:
        return next((e for e in self._events if e.type == type_), None)

    async def _until(
        self, found: Callable[[], CallEvent | None], stage: str, timeout_s: float | None
    ) -> CallEvent:
        try:
            with anyio.fail_after(timeout_s):
                while (event := found()) is None:
                    await self._arrived.wait()
        except TimeoutError:
            raise CallTimeout(self.request_id, stage, timeout_s or 0.0, self.status) from None
        return event

    # `timeout=` is the handle's API (as arq's and Temporal's handles take it): noqa ASYNC109.
    async def wait_for(self, type_: str, *, timeout: float | None = None) -> CallEvent:  # noqa: ASYNC109
        """The first event of `type_`. Raises `CallEnded` when the call ends without one,
        `CallTimeout` when none arrives within `timeout` seconds."""

        def found() -> CallEvent | None:
            return self._first(type_) or self.final

        event = await self._until(found, type_, timeout)
        if event.type != type_:
            raise CallEnded(type_, event)
        return event

    async def started(self, *, timeout: float | None = 30.0) -> CallEvent:  # noqa: ASYNC109
        """`contact.started`: its `data` holds ContactId, ParticipantId and (when the worker
        carries connection data) ParticipantToken and ConnectionData. Raises `CallEnded` when the
        call ended first (rejected, failed, expired, cancelled), `CallTimeout` on time out."""
        return await self.wait_for(EventType.STARTED, timeout=timeout)

    async def outcome(self, *, timeout: float | None = 300.0) -> CallEvent:  # noqa: ASYNC109
        """The final event. Raises `CallTimeout` when it does not arrive within `timeout`."""
        return await self._until(lambda: self.final, "final event", timeout)

    async def events(
        self,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AsyncIterator[CallEvent]:
        """Every event of the call in arrival order, those already here first, ending after the
        final one. `timeout` bounds the wait for each next event (`CallTimeout`)."""
        index = 0
        while True:
            event = await self._until(functools.partial(self._nth, index), "next event", timeout)
            index += 1
            yield event
            if event.final:
                return

    async def cancel(self) -> None:
        """Send the cancel request for this call (its final event then says what happened:
        `request.cancelled`, or the outcome it reached first)."""
        await self._cancel(self)

    def __repr__(self) -> str:
        return f"Call(request_id={self.request_id!r}, status={self.status!r})"
