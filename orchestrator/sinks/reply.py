"""Replies to the requester: a request's events also go to the queue its `ReplyTo` names.

The worker routes a request to its reply queue (`ReplyRoutes.route`) while it handles the
request, once `[events] reply_to_allowed` allowed the queue (`engine.reply_to`). `ReplySink`
wraps the configured sinks: every event goes to them and, at the same time, to its request's
reply queue (message attributes `type` and `request_id`; FIFO queues: one message group per
request, deduplicated by event id), through the SQS sink, carrying the connection data when
`[events] include_connection_data` says so. Neither waits for the other: a slow configured
sink does not hold up the requester's connection data, and a slow or gone reply queue does not
hold up the configured sinks. `publish` returns once both are done (the lifecycle's next event,
and the message's acknowledgement, come after), and raises only what the configured sinks
raised. Replies of concurrent lifecycles to one queue are
batched (`async with ReplySink(...)` runs the batcher; outside such a block each reply goes out
alone).

A reply queue that is gone or denied never holds up the lifecycle: a send is retried a few times
when the failure may pass (throttling, 5xx, the network), then given up; the request's first
give-up is logged (`reply.undeliverable`, once per request, not per event), every event not
delivered is counted (`orchestrator_reply_failures_total{reason}`), and the request's later
events skip its reply queue. The configured sinks still get every event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import anyio
import structlog
from botocore.exceptions import ClientError

from orchestrator.batcher import Batcher
from orchestrator.engine.events import EventSink, LifecycleEvent
from orchestrator.metrics import Metrics
from orchestrator.retry import RetryPolicy
from orchestrator.sinks.aws import SqsEventSink
from orchestrator.sinks.base import SINK_FAILURES, sink_policy
from orchestrator.sqs import is_missing_queue

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("orchestrator.sinks.reply")

#: AWS error codes that say the worker may not write to the queue: retrying cannot help.
_DENIED = frozenset(
    {"AccessDenied", "AccessDeniedException", "KMS.AccessDeniedException", "InvalidAddress"}
)


@dataclass
class _Route:
    url: str
    #: Why its reply queue was given up (None: it was not).
    given_up: str | None = None


class _Routing:
    """`ReplyRoutes.route`'s block (a class: docs/design.md, "What a watched contact holds")."""

    __slots__ = ("_request_id", "_route", "_routes")

    def __init__(self, routes: dict[str, _Route], request_id: str | None, url: str | None) -> None:
        self._routes, self._request_id = routes, request_id
        self._route = None if request_id is None or url is None else _Route(url)

    def __enter__(self) -> None:
        if self._request_id is not None and self._route is not None:
            self._routes[self._request_id] = self._route

    def __exit__(self, *exc: object) -> None:
        rid = self._request_id
        if rid is not None and self._route is not None and self._routes.get(rid) is self._route:
            del self._routes[rid]


class ReplyRoutes:
    """Request id -> its reply queue, for the requests being handled that named one."""

    def __init__(self) -> None:
        self._routes: dict[str, _Route] = {}

    def route(self, request_id: str | None, url: str | None) -> _Routing:
        """Within the block, `request_id`'s events also go to `url` (nothing when either is
        None). `url` must be allowed already: routes are not checked here."""
        return _Routing(self._routes, request_id, url)

    def get(self, request_id: str) -> _Route | None:
        return self._routes.get(request_id)

    def __len__(self) -> int:
        return len(self._routes)


class _Undeliverable(Exception):
    """The reply queue is gone or refuses the worker: not worth retrying."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


#: What ends a reply's delivery: given up at once, or after the retries.
_GIVE_UP: tuple[type[BaseException], ...] = (_Undeliverable, *SINK_FAILURES)


def reply_policy() -> RetryPolicy:
    """A few quick retries: a reply is a courtesy, the lifecycle must not wait on it long."""
    return sink_policy("events.reply", max_attempts=3, max_time_s=5.0, max_backoff_s=1.0)


def _classify(exc: BaseException) -> _Undeliverable | None:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        detail = f"{code}: {error.get('Message', '')}"
        if is_missing_queue(exc):
            return _Undeliverable("missing_queue", detail)
        if code in _DENIED:
            return _Undeliverable("denied", detail)
    return None


class ReplySink:
    """The configured sinks (`inner`) and, concurrently, each event's reply queue (see the
    module)."""

    def __init__(
        self,
        inner: EventSink,
        client: SQSClient,
        routes: ReplyRoutes,
        *,
        include_connection_data: bool,
        metrics: Metrics,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.routes = routes
        self._client = client
        self._include = include_connection_data
        self._metrics = metrics
        self._policy = policy or reply_policy()
        #: (reply queue, events) of concurrent lifecycles, sent together per queue.
        self._batcher: Batcher[tuple[str, Sequence[LifecycleEvent]]] = Batcher(
            self._send, name="events.reply"
        )

    async def __aenter__(self) -> Self:
        await self._batcher.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        return await self._batcher.__aexit__(*exc_info)

    async def _send(
        self, replies: list[tuple[str, Sequence[LifecycleEvent]]]
    ) -> list[BaseException | None]:
        """One batch of replies: each queue's events in as few calls as SQS allows, the queues
        at once; a reply's outcome is its queue's."""
        results: list[BaseException | None] = [None] * len(replies)
        by_queue: dict[str, list[int]] = {}
        for index, (url, _) in enumerate(replies):
            by_queue.setdefault(url, []).append(index)

        async def send(url: str, indexes: list[int]) -> None:
            sink = SqsEventSink(self._client, url, include_connection_data=self._include)
            try:
                await sink.publish([e for i in indexes for e in replies[i][1]])
            except Exception as exc:
                for index in indexes:
                    results[index] = exc

        async with anyio.create_task_group() as tg:
            for url, indexes in by_queue.items():
                tg.start_soon(send, url, indexes)
        return results

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        """`events` to the configured sinks and, at the same time, to their reply queues;
        returns once both are done, raising what the configured sinks raised (a reply's
        failure never raises: see the module)."""
        grouped: dict[str, tuple[_Route, list[LifecycleEvent]]] = {}
        for event in events:
            route = self.routes.get(event.request_id)
            if route is not None:
                grouped.setdefault(event.request_id, (route, []))[1].append(event)
        if not grouped:
            await self.inner.publish(events)
            return
        failure: Exception | None = None

        async def configured() -> None:
            nonlocal failure
            try:
                await self.inner.publish(events)
            except Exception as exc:  # raised as itself below, not inside the group's group
                failure = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(configured)
            for request_id, (route, routed) in grouped.items():
                tg.start_soon(self._reply, request_id, route, routed)
        if failure is not None:
            raise failure

    async def _reply(self, request_id: str, route: _Route, events: list[LifecycleEvent]) -> None:
        if route.given_up is not None:
            self._metrics.reply_failures.labels(route.given_up).inc(len(events))
            return

        async def attempt() -> None:
            try:
                await self._batcher.submit((route.url, events))
            except ClientError as exc:
                undeliverable = _classify(exc)
                if undeliverable is not None:
                    raise undeliverable from exc
                raise

        try:
            await self._policy.call(attempt, context={"sink": "reply"})
        except _GIVE_UP as exc:
            reason = exc.reason if isinstance(exc, _Undeliverable) else "error"
            route.given_up = reason
            self._metrics.reply_failures.labels(reason).inc(len(events))
            log.warning(
                "reply.undeliverable",
                request_id=request_id,
                reply_to=route.url,
                reason=reason,
                error=str(exc),
                detail="this request's later events skip its reply queue; the configured "
                "sinks still get them all",
            )
