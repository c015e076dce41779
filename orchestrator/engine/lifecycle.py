"""The contact lifecycle: start the call, watch it, start screen sharing, say what happened.

`LifecycleEngine.run(request)` drives one validated request to exactly one final event:

1. `request.received`, on its way to the sinks while the start goes ahead (the start does not
   wait for it; every later event of the request does, so each sink gets them in order, and a
   failure to deliver it is raised as before, once the start call is over);
2. StartWebRTCContact with a ClientToken derived from the RequestId (a redelivery finds the same
   contact) -> `contact.started`, carrying the connection data for the requester; before it, a
   non-final `request.waiting` (once per reason) if the start cannot go at once: the instance is
   at its concurrent-call cap, or the start's token is more than a second away;
3. the watch -> `contact.agent_connected`, or final `contact.disconnected` / `contact.timed_out`;
   meanwhile, non-final `contact.queue_position` events while the contact waits in queue
   (`queue_position.py`), none after the watch ends;
4. StartScreenSharing with its own derived ClientToken -> final `screen_sharing.started`, or final
   `screen_sharing.skipped` saying why.

Errors: a terminal Connect error ends the request with `request.failed` naming the AWS code.
Connect not answering (connection errors, timeouts, 5xx) past a call's retry budget fails
nothing: the gateway's call waits at the outage hold (`connect/outage.py`) and tries again in
place, so a started contact stays watched. Any other transient error that outlives its budget (a
start that waited `capacity_max_wait_s` at the capacity gate, a 404 within the consistency
window) ends the request with `request.failed` on the final attempt; on earlier attempts
`run(..., final_attempt=False)` raises `RetryLater` instead, emitting no final event, so the
daemon hands the message back for redelivery. Cancellation (shutdown) propagates at once and
emits nothing.

No orphan contacts (`stopping.py`): a lifecycle that ends while its contact waits for an agent
(timed out with `[watch] on_timeout = "stop"`, failed after the start, given up on its last
receive, cancelled) stops the contact first, unless an agent has it by then, and says so in
`data.contact_stopped`. A contact found connected when the lifecycle was about to stop it at its
deadline goes on as `contact.agent_connected` with `data.late`. A contact ended by StopContact
elsewhere (DisconnectReason `API`: another worker acting on a cancel, or an earlier attempt) is
never reported as the customer leaving: before its deadline it is `request.cancelled`, after it
`contact.timed_out`, as the attempt that stopped it said.

Cancels (`cancellation.py`): a request cancelled before its start never reaches Connect and ends
`request.cancelled` (`stage` before_start); one cancelled while its contact waits has the contact
stopped and ends `request.cancelled` (`stage` waiting_for_agent); once an agent has the contact a
cancel changes nothing.

The engine knows nothing about SQS; clients, sinks, settings and the clock are passed in.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog

from orchestrator import tracing
from orchestrator.clock import Clock, SystemClock
from orchestrator.connect.gateway import ConnectGateway, ContactSnapshot
from orchestrator.connect.operations import Operation
from orchestrator.engine import traces
from orchestrator.engine.cancellation import Cancellation, CancelResult, Stage
from orchestrator.engine.doorbells import ContactNotifier
from orchestrator.engine.events import EventSink, EventType, LifecycleEvent
from orchestrator.engine.queue_position import QueuePositions, Tracking
from orchestrator.engine.request import CallRequest, FieldError, client_token
from orchestrator.engine.stopping import STOPPED_BY_API, LetGo, StopReason, StopResult, let_go
from orchestrator.engine.watch import (
    WatchOutcome,
    WatchPolicy,
    WatchResult,
    verdict,
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
    StartWithdrawn,
    TerminalConnectError,
)
from orchestrator.logcontext import bound
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


class _Announcement:
    """A lifecycle's `request.received` on its way to the sinks: every later event of the
    request waits for it to be delivered (or raises its failure)."""

    __slots__ = ("_done", "error")

    def __init__(self) -> None:
        #: Set once delivered (or failed), then dropped: the announcement lasts as long as the
        #: lifecycle (its watch included), its event need not.
        self._done: anyio.Event | None = anyio.Event()
        self.error: Exception | None = None

    def over(self, error: Exception | None) -> None:
        self.error = error
        done, self._done = self._done, None
        if done is not None:
            done.set()

    async def delivered(self) -> None:
        if self._done is not None:
            await self._done.wait()
        if self.error is not None:
            raise self.error


#: The running lifecycle's `request.received` while it is on its way (None: it is not).
_ANNOUNCING: ContextVar[_Announcement | None] = ContextVar("announcing", default=None)


@dataclass(slots=True)
class _Attempt:
    """One run of one request: what its steps share."""

    request_id: str
    instance_id: str
    #: The validated request, until its contact started: a watched contact keeps only what
    #: the steps after the start need (docs/design.md, "What a watched contact holds").
    request: CallRequest | None
    final_attempt: bool
    cancellation: Cancellation | None
    #: The start's order (lower first) and deadline, and who hears it is over (see `run`).
    priority: float = 0.0
    expiry: Expiry | None = None
    on_started: Callable[[], None] | None = None
    #: Whether the request asked for screen sharing, and the sides it lets share their screen
    #: (used where Connect does not report the capabilities).
    screen_sharing: bool = True
    may_share: tuple[str, ...] = ()
    #: Once the contact started: its id, and when (monotonic, for consistency windows).
    contact_id: str | None = None
    started_mono: float = 0.0

    def start_over(self) -> None:
        """The start call is over (the contact exists, or the lifecycle ends before)."""
        on_started, self.on_started = self.on_started, None
        if on_started is not None:
            on_started()

    def started(self, contact_id: str, now_mono: float) -> None:
        """The contact exists: the full request is let go."""
        self.contact_id, self.started_mono, self.request = contact_id, now_mono, None


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
    #: The engine's queue-position service (None: no `contact.queue_position` events).
    positions: QueuePositions | None = None

    # -- events --------------------------------------------------------------------------------

    async def _emit_for(
        self,
        a: _Attempt,
        type_: EventType,
        data: dict[str, Any] | None = None,
        *,
        secrets: dict[str, Any] | None = None,
        seq: int | str | None = None,
    ) -> LifecycleEvent:
        """`type_` for the attempt's request and contact."""
        return await self._emit(
            type_,
            a.request_id,
            instance_id=a.instance_id,
            contact_id=a.contact_id,
            data=data,
            secrets=secrets,
            seq=seq,
        )

    async def _emit(
        self,
        type_: EventType,
        request_id: str,
        *,
        instance_id: str | None,
        contact_id: str | None = None,
        data: dict[str, Any] | None = None,
        secrets: dict[str, Any] | None = None,
        seq: int | str | None = None,
        counted: bool = True,
    ) -> LifecycleEvent:
        event = LifecycleEvent.create(
            type_,
            request_id,
            contact_id=contact_id,
            instance_id=instance_id,
            data=data,
            secrets=secrets,
            now=datetime.fromtimestamp(self.clock.time(), UTC),
            seq=seq,
            trace_id=tracing.trace_id(),
        )
        traces.record(event)
        announcing = _ANNOUNCING.get()
        if announcing is not None:  # the request's events reach each sink in order
            await announcing.delivered()
        await self.sink.publish([event])
        if event.final and counted:
            self.metrics.requests.labels(type_.value).inc()
        return event

    async def reject(
        self,
        request_id: str | None,
        errors: list[FieldError],
        *,
        instance_id: str | None = None,
        again: bool = False,
    ) -> LifecycleEvent | None:
        """Emit the final `request.rejected` for a message that is not a valid request, or, when
        no RequestId could be read (nobody to tell), only count it. `again`: the same rejection
        sent once more (a later receive of the message), not counted twice."""
        if request_id is None:
            if not again:
                self.metrics.requests.labels(EventType.REJECTED.value).inc()
            return None
        return await self._emit(
            EventType.REJECTED,
            request_id,
            instance_id=instance_id,
            data={"errors": [e.as_dict() for e in errors]},
            counted=not again,
        )

    # -- the lifecycle -------------------------------------------------------------------------

    async def run(
        self,
        request: CallRequest,
        *,
        final_attempt: bool = True,
        priority: float = 0.0,
        expiry: Expiry | None = None,
        announce: bool = True,
        on_started: Callable[[], None] | None = None,
        cancellation: Cancellation | None = None,
    ) -> LifecycleEvent:
        """Drive `request` to its final event, which is returned (and already delivered).

        `priority` orders starts (lower first: the daemon passes the message's SentTimestamp,
        so the oldest request starts first). With `expiry`, a request not started by
        `expiry.not_after` ends with `request.expired` and never reaches Connect. With
        `cancellation`, a cancel ends the request with `request.cancelled` (see the module's
        docstring). `on_started` is called once the start call is over (the contact exists, or
        the lifecycle ends before) and `request.received` is out. `announce=False` skips
        `request.received` (a retry in the same delivery). Raises `DeploymentFault` (no final
        event) when the deployment, not the request, is at fault; `RetryLater` for a transient
        failure before the final attempt. The lifecycle lets go of `request` once its contact
        started: a caller that keeps it keeps it for every watched contact.
        """
        a = _Attempt(
            request.request_id,
            request.instance_id,
            request,
            final_attempt,
            cancellation,
            priority,
            expiry,
            on_started,
            screen_sharing=request.screen_sharing,
            may_share=_sides_allowed(request),
        )
        del request
        with bound(request_id=a.request_id):
            final = await self._decide(a, announce=announce)
            if cancellation is not None:
                cancellation.too_late()
            return final

    async def _decide(self, a: _Attempt, *, announce: bool) -> LifecycleEvent:
        try:
            await (self._announced(a) if announce else self._start(a))
            with bound(contact_id=a.contact_id):
                return await self._after_start(a)
        except StartWithdrawn:
            return await self._cancelled(a, contact_stopped=False)
        except StartExpired:
            return await self._expired(a)
        except DeploymentError as error:
            raise DeploymentFault("connect", error) from error
        except TerminalConnectError as error:
            if self._configuration_at_fault(a, error):
                raise DeploymentFault("connect", error) from error
            return await self._failed(a, error, transient=False)
        except ConnectError as error:
            transient = isinstance(error, RetryableConnectError | CapacityError)
            if transient and not a.final_attempt:
                log.warning("lifecycle.retry_later", operation=error.operation, error=error.code)
                raise RetryLater(error) from error
            return await self._failed(a, error, transient=transient)

    async def _announced(self, a: _Attempt) -> None:
        """`_start` while `request.received` is delivered (see the module): the start call does
        not wait for it, the start's events do, and the lifecycle goes on once both are over
        (what follows holds no task group). A failure of the start never cancels the delivery;
        a failed delivery is raised first."""
        announcing = _Announcement()
        # The start is not over for admission until request.received is out too (as when the
        # start waited for it): a worker whose sinks are slow holds no more unstarted messages.
        on_started, over = a.on_started, {"start", "received"}

        def one_over(part: str) -> None:
            over.discard(part)
            if not over and on_started is not None:
                on_started()

        a.on_started = functools.partial(one_over, "start")
        request_id, instance_id = a.request_id, a.instance_id

        async def announce() -> None:
            error: Exception | None = None
            try:
                await self._emit(EventType.RECEIVED, request_id, instance_id=instance_id)
            except Exception as exc:  # raised by every later event, and below
                error = exc
            finally:
                announcing.over(error)
                one_over("received")

        failure: Exception | None = None
        async with anyio.create_task_group() as tg:
            # Started before the announcement is made current: the task copies this context
            # now, so `request.received` itself waits for nothing.
            tg.start_soon(announce)
            token = _ANNOUNCING.set(announcing)
            try:
                await self._start(a)
            except Exception as exc:  # raised as itself below, once the delivery is over
                failure = exc
            finally:
                _ANNOUNCING.reset(token)
        if announcing.error is not None:  # what stopped the lifecycle, as when it went first
            raise announcing.error
        if failure is not None:
            raise failure

    def _configuration_at_fault(self, a: _Attempt, error: ConnectError) -> bool:
        """An unknown instance or flow that is the configured default is the deployment's
        fault: every request using it would fail the same way."""
        flow = a.request.contact_flow_id if a.request is not None else None
        return (
            error.code == "ResourceNotFoundException"
            and error.operation == Operation.START_WEBRTC_CONTACT
            and bool(self.deployment_ids & {a.instance_id, flow})
        )

    async def _expired(self, a: _Attempt) -> LifecycleEvent:
        """The final `request.expired`: the request outlived its shelf life unstarted."""
        expiry = a.expiry
        assert expiry is not None  # noqa: S101 (only expired when an expiry was given)
        age = None if expiry.sent_at is None else round(self.clock.time() - expiry.sent_at, 3)
        log.info("request.expired", limit=expiry.limit, age_s=age)
        return await self._emit_for(
            a,
            EventType.EXPIRED,
            {"age_s": age, "limit": expiry.limit, "not_after": _iso(expiry.not_after)},
        )

    async def _failed(self, a: _Attempt, error: ConnectError, *, transient: bool) -> LifecycleEvent:
        data: dict[str, Any] = {
            "operation": error.operation,
            "error_code": error.code,
            "message": error.message,
            "transient": transient,
        }
        contact = error.contact_id or a.contact_id
        if contact is not None:
            data["contact_stopped"] = bool(error.contact_stopped)
        return await self._emit(
            EventType.FAILED, a.request_id, instance_id=a.instance_id, contact_id=contact, data=data
        )

    async def _start(self, a: _Attempt) -> None:
        """StartWebRTCContact (its waits told by `request.waiting`, once per reason), unless the
        request was cancelled or expired first (`StartWithdrawn`, `StartExpired`); then
        `contact.started`."""
        request, expiry = a.request, a.expiry
        assert request is not None  # noqa: S101 (let go once started)
        told: set[str] = set()

        async def waiting(reason: str, estimated_start_s: float | None) -> None:
            if reason in told:  # once per reason
                return
            told.add(reason)
            await self._emit_for(
                a,
                EventType.WAITING,
                {"reason": reason, "estimated_start_s": estimated_start_s},
                seq=reason,
            )

        try:
            withdrawn = a.cancellation is not None and await a.cancellation.withdrawn()
            if withdrawn:
                raise StartWithdrawn("cancelled")
            if expiry is not None and self.clock.time() > expiry.not_after:
                raise StartExpired("expired")
            started = await self.gateway.start_webrtc_contact(
                request.start_webrtc_contact_params(client_token(a.request_id, "start")),
                request_id=a.request_id,
                priority=a.priority,
                not_after=None if expiry is None else expiry.not_after,
                on_waiting=waiting,
                withdrawal=a.cancellation,
            )
        finally:
            a.start_over()
        del request
        # The consistency window opens once the contact exists: capacity and throttle waits
        # inside the start call can outlast it.
        a.started(started.contact_id, self.clock.monotonic())
        if a.cancellation is not None:
            a.cancellation.started(started.contact_id)
        # The connection data and token are the requester's: not kept while watching.
        await self._emit_for(
            a,
            EventType.STARTED,
            {"ContactId": started.contact_id, "ParticipantId": started.participant_id},
            secrets={
                "ParticipantToken": started.participant_token,
                "ConnectionData": dict(started.connection_data),
            },
        )

    async def _after_start(self, a: _Attempt) -> LifecycleEvent:
        try:
            result = await self._watch(a)
        except ConnectError as error:
            reason = self._gives_up(error, final_attempt=a.final_attempt)
            if reason is None:
                raise
            let = await self._let_go(a, reason)
            if let.result is not StopResult.AGENT_CONNECTED or let.snapshot is None:
                error.contact_stopped = let.contact_stopped
                raise
            # The confirmation found an agent: the failure of the watch no longer matters.
            result = self._judged(let.snapshot, polls=0)
        return await self._outcome(a, result)

    async def _watch(self, a: _Attempt) -> WatchResult:
        """The watch, which a cancel ends (it rings the contact's doorbell)."""
        contact, cancellation = a.contact_id, a.cancellation
        assert contact is not None  # noqa: S101 (watched once started)
        if cancellation is not None:
            await cancellation.cancelled()  # a tombstone recorded meanwhile, or a redelivery
        ring = functools.partial(self.notifier.ring, contact)
        with (
            self._queue_positions(a.request_id, a.instance_id, contact) as tracking,
            nullcontext() if cancellation is None else cancellation.watching(ring),
        ):
            result = await watch_contact(
                self.gateway,
                instance_id=a.instance_id,
                contact_id=contact,
                policy=self.watch,
                clock=self.clock,
                started_mono=a.started_mono,
                notifier=self.notifier,
                rng=self.rng,
                metrics=self.metrics,
                cancelled=None if cancellation is None else cancellation.is_cancelled,
            )
            if tracking is not None:  # no position event after this, whatever comes next
                await tracking.close(result.snapshot)
        self.metrics.polls_per_contact.observe(result.polls)
        return result

    def _judged(self, snapshot: ContactSnapshot, *, polls: int) -> WatchResult:
        """A watch's result from a snapshot taken outside the watch (a confirmation)."""
        initiated = snapshot.initiated_at if snapshot.initiated_at is not None else 0.0
        deadline = initiated + self.watch.max_wait_s
        outcome = verdict(snapshot, deadline) or WatchOutcome.TIMED_OUT
        now, mono = self.clock.time(), self.clock.monotonic()
        return WatchResult(outcome, snapshot, polls, deadline, now, mono)

    @staticmethod
    def _gives_up(error: ConnectError, *, final_attempt: bool) -> StopReason | None:
        """Why a lifecycle whose watch failed lets go of its contact (None: it does not; the
        deployment is at fault, or a redelivery will resume the watch)."""
        if isinstance(error, DeploymentError):
            return None
        if isinstance(error, TerminalConnectError):
            return StopReason.FAILED
        return StopReason.GIVEN_UP if final_attempt else None

    async def _let_go(self, a: _Attempt, reason: StopReason) -> LetGo:
        assert a.contact_id is not None  # noqa: S101 (only once started)
        return await let_go(
            self.gateway,
            a.instance_id,
            a.contact_id,
            reason,
            metrics=self.metrics,
            priority=self.watch.confirm_priority,
            fresh_since=a.started_mono,
        )

    @staticmethod
    def _unless_retried(a: _Attempt, let: LetGo) -> None:
        """A stop that failed transiently is tried again by a redelivery (which reaches the same
        verdict), unless this is the last attempt."""
        if isinstance(let.error, RetryableConnectError) and not a.final_attempt:
            error = let.error
            log.warning("lifecycle.retry_later", operation=error.operation, error=error.code)
            raise RetryLater(error) from error

    async def _outcome(self, a: _Attempt, result: WatchResult) -> LifecycleEvent:
        snap = result.snapshot
        if result.outcome is WatchOutcome.CANCELLED:
            return await self._cancel_waiting(a, result)
        if result.outcome is WatchOutcome.DISCONNECTED:
            if snap.disconnect_reason == STOPPED_BY_API:
                # Not the customer: StopContact elsewhere. At its deadline, an earlier attempt
                # that timed out; before, a cancel (another worker acting on one that named the
                # contact, or an earlier attempt at this request).
                if (snap.disconnected_at or 0.0) >= result.deadline:
                    return await self._timed_out(a, result, contact_stopped=True)
                return await self._cancelled(a, contact_stopped=True, stopped_by="elsewhere")
            return await self._emit_for(
                a,
                EventType.DISCONNECTED,
                {
                    **self._common(result),
                    "disconnected_at": _iso(snap.disconnected_at),
                    "reason": snap.disconnect_reason,
                },
            )
        if result.outcome is WatchOutcome.TIMED_OUT:
            return await self._timed_out_or_late(a, result)
        return await self._agent_connected(a, result)

    async def _timed_out_or_late(self, a: _Attempt, result: WatchResult) -> LifecycleEvent:
        snap, stop = result.snapshot, self.watch.on_timeout == "stop"
        if snap.agent_connected_at is not None:  # an agent, after the deadline
            if stop:
                return await self._agent_connected(a, result, late=True)
            return await self._timed_out(a, result, contact_stopped=False)
        if snap.disconnected_at is not None or not stop:
            return await self._timed_out(
                a, result, contact_stopped=snap.disconnect_reason == STOPPED_BY_API
            )
        let = await self._let_go(a, StopReason.TIMED_OUT)
        if let.result is StopResult.AGENT_CONNECTED and let.snapshot is not None:
            connected = replace(
                result,
                snapshot=let.snapshot,
                observed_at=self.clock.time(),
                observed_mono=self.clock.monotonic(),
            )
            late = (let.snapshot.agent_connected_at or 0.0) > result.deadline
            return await self._agent_connected(a, connected, late=late)
        self._unless_retried(a, let)
        return await self._timed_out(a, result, contact_stopped=let.contact_stopped)

    async def _cancel_waiting(self, a: _Attempt, result: WatchResult) -> LifecycleEvent:
        """The request was cancelled while its contact waited: stop it, unless it is too late
        (an agent has it, or the customer left first: then what Connect says decides)."""
        assert a.cancellation is not None  # noqa: S101 (only a cancellation ends a watch so)
        let = await self._let_go(a, StopReason.CANCELLED)
        ended_first = let.result is StopResult.ALREADY_ENDED and not let.contact_stopped
        if let.snapshot is not None and (let.result is StopResult.AGENT_CONNECTED or ended_first):
            log.info("request.cancel_too_late", found=let.result.value)
            a.cancellation.too_late()
            return await self._outcome(a, self._judged(let.snapshot, polls=result.polls))
        self._unless_retried(a, let)
        return await self._cancelled(a, contact_stopped=let.contact_stopped)

    async def _cancelled(
        self, a: _Attempt, *, contact_stopped: bool, stopped_by: str | None = None
    ) -> LifecycleEvent:
        stage = Stage.BEFORE_START if a.contact_id is None else Stage.WAITING_FOR_AGENT
        data: dict[str, Any] = {"stage": stage.value, "contact_stopped": contact_stopped}
        cancellation = a.cancellation
        if cancellation is not None and cancellation.tombstone is not None:
            data["cancelled_at"] = _iso(cancellation.tombstone.cancelled_at)
        if stopped_by is not None:
            data["stopped_by"] = stopped_by
        if cancellation is not None:
            cancellation.settle(CancelResult.CANCELLED)
        log.info("request.cancelled", **data)
        return await self._emit_for(
            a,
            EventType.CANCELLED,
            data,
        )

    async def _timed_out(
        self, a: _Attempt, result: WatchResult, *, contact_stopped: bool
    ) -> LifecycleEvent:
        return await self._emit_for(
            a,
            EventType.TIMED_OUT,
            {
                **self._common(result),
                "max_wait_s": self.watch.max_wait_s,
                "deadline": _iso(result.deadline),
                "contact_stopped": contact_stopped,
            },
        )

    @staticmethod
    def _common(result: WatchResult) -> dict[str, Any]:
        return {"polls": result.polls, "initiated_at": _iso(result.snapshot.initiated_at)}

    def _queue_positions(
        self, request_id: str, instance_id: str, contact_id: str
    ) -> AbstractContextManager[Tracking | None]:
        """The contact's place in line is told while the block runs (if positions are on)."""
        if self.positions is None:
            return nullcontext()

        async def publish(data: dict[str, Any], seq: int) -> None:
            await self._emit(
                EventType.QUEUE_POSITION,
                request_id,
                instance_id=instance_id,
                contact_id=contact_id,
                data=data,
                seq=seq,
            )

        return self.positions.tracking(instance_id, contact_id, publish)

    async def _agent_connected(
        self, a: _Attempt, result: WatchResult, *, late: bool = False
    ) -> LifecycleEvent:
        rid, instance, snap = a.request_id, a.instance_id, result.snapshot
        assert a.contact_id is not None  # noqa: S101 (connected once started)
        if a.cancellation is not None:
            a.cancellation.too_late()
        connected = snap.agent_connected_at
        waited = None
        if connected is not None:
            self.metrics.detection_delay.labels(result.noticed_via).observe(
                max(0.0, result.observed_at - connected)
            )
            if snap.initiated_at is not None:
                waited = round(connected - snap.initiated_at, 3)
                self.metrics.time_to_agent.observe(max(0.0, waited))
        data: dict[str, Any] = {
            "agent_id": snap.agent_id,
            "connected_at": _iso(connected),
            "polls": result.polls,
            "waited_s": waited,
        }
        if late:  # after the deadline: found when the contact was about to be stopped
            data["late"] = True
        await self._emit(
            EventType.AGENT_CONNECTED, rid, instance_id=instance, contact_id=a.contact_id, data=data
        )
        return await self._screen_sharing(a, a.contact_id, result)

    async def _screen_sharing(
        self, a: _Attempt, contact: str, result: WatchResult
    ) -> LifecycleEvent:
        rid, instance = a.request_id, a.instance_id

        async def skipped(reason: str, **details: Any) -> LifecycleEvent:
            return await self._emit(
                EventType.SCREEN_SHARING_SKIPPED,
                rid,
                instance_id=instance,
                contact_id=contact,
                data={"reason": reason, **details},
            )

        if not a.screen_sharing:
            return await skipped("not_requested")
        missing = _sides_without_screen_share(a.may_share, result.snapshot)
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


def _sides_allowed(request: CallRequest) -> tuple[str, ...]:
    """The participants the request lets share their screen."""
    requested = request.allowed_capabilities
    if requested is None:
        return ()
    sides = (("Customer", requested.customer), ("Agent", requested.agent))
    return tuple(side for side, part in sides if part and part.screen_share == "SEND")


def _sides_without_screen_share(allowed: tuple[str, ...], snapshot: ContactSnapshot) -> list[str]:
    """Which participants may not share their screen (Connect's view first, else the request's
    `allowed` sides)."""
    sides: list[str] = []
    for side, reported in (
        ("Customer", snapshot.customer_capabilities),
        ("Agent", snapshot.agent_capabilities),
    ):
        ok = reported.get("ScreenShare") == "SEND" if reported else side in allowed
        if not ok:
            sides.append(side)
    return sides
