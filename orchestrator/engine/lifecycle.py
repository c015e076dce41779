"""The contact lifecycle: start the call, watch it, start screen sharing, say what happened.

`LifecycleEngine.run(request)` drives one validated request to exactly one final event:

1. `request.received`;
2. StartWebRTCContact with a ClientToken derived from the RequestId (a redelivery finds the same
   contact) -> `contact.started`, carrying the connection data for the requester;
3. the watch -> `contact.agent_connected`, or final `contact.disconnected` / `contact.timed_out`;
4. StartScreenSharing with its own derived ClientToken -> final `screen_sharing.started`, or final
   `screen_sharing.skipped` saying why.

Errors: a terminal Connect error ends the request with `request.failed` naming the AWS code. A
transient error that outlives its retry budget also ends it with `request.failed` on the final
attempt; on earlier attempts `run(..., final_attempt=False)` raises `RetryLater` instead, emitting
no final event, so the daemon hands the message back for redelivery. Cancellation (shutdown)
propagates at once and emits nothing.

The engine knows nothing about SQS; clients, sinks, settings and the clock are passed in.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from orchestrator import tracing
from orchestrator.clock import Clock, SystemClock
from orchestrator.connect.gateway import ConnectGateway, ContactSnapshot, StartedContact
from orchestrator.connect.operations import Operation
from orchestrator.engine import traces
from orchestrator.engine.doorbells import ContactNotifier
from orchestrator.engine.events import EventSink, EventType, LifecycleEvent
from orchestrator.engine.request import CallRequest, FieldError, client_token
from orchestrator.engine.watch import (
    WatchOutcome,
    WatchPolicy,
    WatchResult,
    watch_contact,
)
from orchestrator.errors import (
    CapacityError,
    ConnectError,
    DeploymentError,
    DeploymentFault,
    RetryableConnectError,
    RetryLater,
    StartExpired,
    TerminalConnectError,
)
from orchestrator.metrics import Metrics

log = structlog.get_logger("orchestrator.engine.lifecycle")


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


@dataclass(frozen=True)
class Expiry:
    """A request's shelf life: not started by `not_after` (epoch seconds), it expires.

    `limit` names the limit that applied (`request_ttl_s=300`, `ExpiresAt=...`)."""

    not_after: float
    limit: str
    sent_at: float | None = None


@dataclass
class LifecycleEngine:
    """Runs lifecycles; one per worker, shared by all of them."""

    gateway: ConnectGateway
    sink: EventSink
    #: The worker's one registry (assembly creates it): every part reports to the same one.
    metrics: Metrics
    watch: WatchPolicy = field(default_factory=WatchPolicy)
    clock: Clock = field(default_factory=SystemClock)
    notifier: ContactNotifier = field(default_factory=ContactNotifier)
    rng: random.Random = field(default_factory=random.Random)
    #: The configured default instance and flow ids: Connect not knowing one of them is the
    #: deployment's fault, not the request's.
    deployment_ids: frozenset[str] = frozenset()

    # -- events --------------------------------------------------------------------------------

    async def _emit(
        self,
        type_: EventType,
        request_id: str,
        *,
        instance_id: str | None,
        contact_id: str | None = None,
        data: dict[str, Any] | None = None,
        secrets: dict[str, Any] | None = None,
    ) -> LifecycleEvent:
        event = LifecycleEvent.create(
            type_,
            request_id,
            contact_id=contact_id,
            instance_id=instance_id,
            data=data,
            secrets=secrets,
            now=datetime.fromtimestamp(self.clock.time(), UTC),
            trace_id=tracing.trace_id(),
        )
        traces.record(event)
        await self.sink.publish([event])
        if event.final:
            self.metrics.requests.labels(type_.value).inc()
        return event

    async def reject(
        self, request_id: str | None, errors: list[FieldError], *, instance_id: str | None = None
    ) -> LifecycleEvent | None:
        """Emit the final `request.rejected` for a message that is not a valid request, or, when
        no RequestId could be read (nobody to tell), only count it."""
        if request_id is None:
            self.metrics.requests.labels(EventType.REJECTED.value).inc()
            return None
        return await self._emit(
            EventType.REJECTED,
            request_id,
            instance_id=instance_id,
            data={"errors": [e.as_dict() for e in errors]},
        )

    # -- the lifecycle -------------------------------------------------------------------------

    async def expire(self, request: CallRequest, expiry: Expiry) -> LifecycleEvent:
        """Emit the final `request.expired`: the request outlived its shelf life unstarted."""
        age = None if expiry.sent_at is None else round(self.clock.time() - expiry.sent_at, 3)
        log.info("request.expired", request_id=request.request_id, limit=expiry.limit, age_s=age)
        return await self._emit(
            EventType.EXPIRED,
            request.request_id,
            instance_id=request.instance_id,
            data={"age_s": age, "limit": expiry.limit, "not_after": _iso(expiry.not_after)},
        )

    async def run(
        self,
        request: CallRequest,
        *,
        final_attempt: bool = True,
        priority: float = 0.0,
        expiry: Expiry | None = None,
        announce: bool = True,
        on_started: Callable[[], None] | None = None,
    ) -> LifecycleEvent:
        """Drive `request` to its final event, which is returned (and already delivered).

        `priority` orders starts (lower first: the daemon passes the message's SentTimestamp,
        so the oldest request starts first). With `expiry`, a request not started by
        `expiry.not_after` ends with `request.expired` and never reaches Connect. `on_started`
        is called once the start call is over (the contact exists, or the lifecycle ends
        before). `announce=False` skips `request.received` (a retry in the same delivery).
        Raises `DeploymentFault` (no final event) when the deployment, not the request, is at
        fault; `RetryLater` for a transient failure before the final attempt.
        """
        with structlog.contextvars.bound_contextvars(request_id=request.request_id):
            if announce:
                await self._emit(
                    EventType.RECEIVED, request.request_id, instance_id=request.instance_id
                )
            if expiry is not None and self.clock.time() > expiry.not_after:
                if on_started is not None:
                    on_started()
                return await self.expire(request, expiry)
            try:
                return await self._drive(request, priority, expiry, on_started)
            except StartExpired:
                assert expiry is not None  # noqa: S101 (only raised when an expiry was given)
                return await self.expire(request, expiry)
            except DeploymentError as error:
                raise DeploymentFault("connect", error) from error
            except TerminalConnectError as error:
                if self._configuration_at_fault(request, error):
                    raise DeploymentFault("connect", error) from error
                return await self._failed(request, error, transient=False)
            except ConnectError as error:
                transient = isinstance(error, RetryableConnectError | CapacityError)
                if transient and not final_attempt:
                    log.warning(
                        "lifecycle.retry_later", operation=error.operation, error=error.code
                    )
                    raise RetryLater(error) from error
                return await self._failed(request, error, transient=transient)

    def _configuration_at_fault(self, request: CallRequest, error: ConnectError) -> bool:
        """An unknown instance or flow that is the configured default is the deployment's
        fault: every request using it would fail the same way."""
        return (
            error.code == "ResourceNotFoundException"
            and error.operation == Operation.START_WEBRTC_CONTACT
            and bool(self.deployment_ids & {request.instance_id, request.contact_flow_id})
        )

    async def _failed(
        self, request: CallRequest, error: ConnectError, *, transient: bool
    ) -> LifecycleEvent:
        return await self._emit(
            EventType.FAILED,
            request.request_id,
            instance_id=request.instance_id,
            contact_id=error.contact_id,
            data={
                "operation": error.operation,
                "error_code": error.code,
                "message": error.message,
                "transient": transient,
            },
        )

    async def _drive(
        self,
        request: CallRequest,
        priority: float,
        expiry: Expiry | None,
        on_started: Callable[[], None] | None,
    ) -> LifecycleEvent:
        token = client_token(request.request_id, "start")
        try:
            started = await self.gateway.start_webrtc_contact(
                request.start_webrtc_contact_params(token),
                request_id=request.request_id,
                priority=priority,
                not_after=None if expiry is None else expiry.not_after,
            )
        finally:
            if on_started is not None:
                on_started()
        # The consistency window opens once the contact exists: capacity and throttle waits
        # inside the start call can outlast it.
        started_mono = self.clock.monotonic()
        with structlog.contextvars.bound_contextvars(contact_id=started.contact_id):
            try:
                return await self._after_start(request, started, started_mono)
            except ConnectError as error:
                error.contact_id = error.contact_id or started.contact_id
                raise

    async def _after_start(
        self, request: CallRequest, started: StartedContact, started_mono: float
    ) -> LifecycleEvent:
        rid, instance, contact = request.request_id, request.instance_id, started.contact_id
        await self._emit(
            EventType.STARTED,
            rid,
            instance_id=instance,
            contact_id=contact,
            data={"ContactId": contact, "ParticipantId": started.participant_id},
            secrets={
                "ParticipantToken": started.participant_token,
                "ConnectionData": dict(started.connection_data),
            },
        )
        result = await watch_contact(
            self.gateway,
            instance_id=instance,
            contact_id=contact,
            policy=self.watch,
            clock=self.clock,
            started_mono=started_mono,
            notifier=self.notifier,
            rng=self.rng,
            metrics=self.metrics,
        )
        self.metrics.polls_per_contact.observe(result.polls)
        snap = result.snapshot
        data: dict[str, Any]
        if result.outcome is WatchOutcome.DISCONNECTED:
            type_ = EventType.DISCONNECTED
            data = {"disconnected_at": _iso(snap.disconnected_at), "reason": snap.disconnect_reason}
        elif result.outcome is WatchOutcome.TIMED_OUT:
            type_ = EventType.TIMED_OUT
            data = {"max_wait_s": self.watch.max_wait_s, "deadline": _iso(result.deadline)}
        else:
            return await self._agent_connected(request, contact, result)
        return await self._emit(
            type_,
            rid,
            instance_id=instance,
            contact_id=contact,
            data={"polls": result.polls, "initiated_at": _iso(snap.initiated_at), **data},
        )

    async def _agent_connected(
        self, request: CallRequest, contact: str, result: WatchResult
    ) -> LifecycleEvent:
        rid, instance, snap = request.request_id, request.instance_id, result.snapshot
        connected = snap.agent_connected_at
        waited = None
        if connected is not None:
            self.metrics.detection_delay.labels(result.noticed_via).observe(
                max(0.0, result.observed_at - connected)
            )
            if snap.initiated_at is not None:
                waited = round(connected - snap.initiated_at, 3)
                self.metrics.time_to_agent.observe(max(0.0, waited))
        await self._emit(
            EventType.AGENT_CONNECTED,
            rid,
            instance_id=instance,
            contact_id=contact,
            data={
                "agent_id": snap.agent_id,
                "connected_at": _iso(connected),
                "polls": result.polls,
                "waited_s": waited,
            },
        )
        return await self._screen_sharing(request, contact, result)

    async def _screen_sharing(
        self, request: CallRequest, contact: str, result: WatchResult
    ) -> LifecycleEvent:
        rid, instance = request.request_id, request.instance_id

        async def skipped(reason: str, **details: Any) -> LifecycleEvent:
            return await self._emit(
                EventType.SCREEN_SHARING_SKIPPED,
                rid,
                instance_id=instance,
                contact_id=contact,
                data={"reason": reason, **details},
            )

        if not request.screen_sharing:
            return await skipped("not_requested")
        missing = _sides_without_screen_share(request, result.snapshot)
        if missing:
            return await skipped("capability_not_allowed", sides=missing)
        # Called even when the call already ended: on a redelivery, the token's earlier success
        # must come back as `screen_sharing.started` again. A refusal is then final at once.
        ended = result.snapshot.disconnected_at is not None
        try:
            await self.gateway.start_screen_sharing(
                instance,
                contact,
                client_token(rid, "screen-sharing"),
                fresh_since=None if ended else result.observed_mono,
            )
        except ConnectError as error:
            if error.code != "InvalidRequestException":
                raise
            # Refused: most likely the call ended since the agent connected.
            snapshot = await self.gateway.describe_contact(
                instance, contact, fresh_since=None, priority=0.0
            )
            if snapshot.disconnected_at is None:
                raise
            return await skipped("contact_ended", disconnected_at=_iso(snapshot.disconnected_at))
        return await self._emit(
            EventType.SCREEN_SHARING_STARTED, rid, instance_id=instance, contact_id=contact
        )


def _sides_without_screen_share(request: CallRequest, snapshot: ContactSnapshot) -> list[str]:
    """Which participants may not share their screen (Connect's view first, else the request)."""
    requested = request.allowed_capabilities
    sides: list[str] = []
    for side, reported in (
        ("Customer", snapshot.customer_capabilities),
        ("Agent", snapshot.agent_capabilities),
    ):
        if reported:
            allowed = reported.get("ScreenShare") == "SEND"
        else:
            part = getattr(requested, side.lower(), None) if requested else None
            allowed = bool(part and part.screen_share == "SEND")
        if not allowed:
            sides.append(side)
    return sides
