"""The worker: receives call requests from a queue and runs one lifecycle per message.

Data flows one way: queue source -> request validation -> lifecycle engine -> sinks -> ack.

* **Admission.** A message is received only when its contact can be started soon: messages held
  but not started yet are bounded by `max_waiting_to_start` (derived from the start rate this
  worker may use), started lifecycles (watches) by `max_in_flight`. While Connect refuses starts
  for the instance's concurrent-call cap, or while the deployment is at fault, the worker takes
  no new work. The backlog stays in the queue: durable, shared by every replica, visible to
  autoscalers.
* Keeps each message hidden while its lifecycle runs (`Leases`: a visibility heartbeat) and
  acknowledges it only after its final event reached the sinks. A transient failure hands the
  message back with a delay that grows with its receive count; a message that is not a valid
  request gets `request.rejected` and goes back so the redrive policy moves it to the DLQ.
* A deployment fault (access denied, an endpoint that is not Connect, the configured default
  instance or flow unknown, a sink that stays down) ends no request: the lifecycle is retried in
  place with a growing pause, `/readyz` fails with the reason, and nothing new is received.
* `stop()` (idempotent; a signal handler only calls it) stops receiving once the pending
  ReceiveMessage has returned (what it returns goes back at once), hands back the messages whose
  contact has not started at once, and lets started lifecycles finish within the grace period,
  then cancels the rest and hands their messages back (another worker resumes them with the same
  ClientToken). A second `stop()` skips the rest of the grace period.
* The redrive policy is read before the first receive (the worker is not ready until it is
  known) and re-read now and then.
* The receive loop survives every error (credentials, network, missing queue): it logs, backs off
  and tries again.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from orchestrator.bounds import check_bounds, described
from orchestrator.clock import Clock, SystemClock, wait_first
from orchestrator.connect.capacity import CapacityGate
from orchestrator.daemon.leases import Lease, Leases
from orchestrator.daemon.readiness import ReadinessBoard
from orchestrator.daemon.source import (
    MAX_VISIBILITY_TIMEOUT_S,
    MAX_WAIT_TIME_S,
    QueueMessage,
    QueueSource,
)
from orchestrator.engine.events import EventType
from orchestrator.engine.lifecycle import Expiry, LifecycleEngine
from orchestrator.engine.request import CallRequest, RequestDefaults, RequestRejected, parse_request
from orchestrator.errors import DeploymentFault, RetryLater, SinkError
from orchestrator.metrics import Metrics

log = structlog.get_logger("orchestrator.daemon.worker")

#: A long poll still pending this long past its wait time after `stop()` is wedged: cut it off.
_POLL_MARGIN_S = 5.0
#: The readiness board's parts this worker reports.
QUEUE_PART = "queue"
DEPLOYMENT_PART = "deployment"


@dataclass(frozen=True)
class WorkerOptions:
    max_in_flight: int = field(
        default=1000,
        metadata=described(
            "Contacts watched at once by this worker (started lifecycles). Each mostly waits, "
            "so thousands are fine. Messages received but not started yet are bounded "
            "separately (max_waiting_to_start).",
            ge=1,
            le=100_000,
        ),
    )
    max_waiting_to_start: int = field(
        default=10,
        metadata=described(
            "Messages held but not started yet, at most: admission receives a request only "
            "when StartWebRTCContact can start it soon, and the backlog stays in the queue "
            "(durable, shared by every replica, visible to autoscalers).",
            ge=1,
            le=1000,
        ),
    )
    wait_time_s: int = field(
        default=MAX_WAIT_TIME_S,
        metadata=described("Long-poll wait of ReceiveMessage, seconds.", ge=0, le=MAX_WAIT_TIME_S),
    )
    visibility_timeout_s: int = field(
        default=60,
        metadata=described(
            "Visibility timeout given to received messages, seconds. A heartbeat extends it "
            "while the lifecycle runs, so it only bounds how long a crashed worker's messages "
            "stay hidden.",
            ge=1,
            le=MAX_VISIBILITY_TIMEOUT_S,
        ),
    )
    unstarted_visibility_timeout_s: int = field(
        default=15,
        metadata=described(
            "Visibility given on receive, until the message's contact starts (then "
            "visibility_timeout_s): a crashed worker's unstarted messages come back after this "
            "long.",
            ge=2,
            le=MAX_VISIBILITY_TIMEOUT_S,
        ),
    )
    max_receive_count: int = field(
        default=5,
        metadata=described(
            "Deliveries before a request is on its last attempt (a transient failure then ends "
            "it with request.failed instead of handing it back). Read from the queue's redrive "
            "policy when it has one; this value is used when it has none.",
            ge=1,
            le=1000,
        ),
    )
    delete_rejected: bool = field(
        default=False,
        metadata=described(
            "Delete invalid messages after their request.rejected event instead of handing "
            "them back so the redrive policy moves them to the dead-letter queue."
        ),
    )
    retry_base_delay_s: int = field(
        default=10,
        metadata=described(
            "After a transient failure the message is handed back hidden for "
            "min(retry_max_delay_s, retry_base_delay_s * 2^(receives - 1)) seconds, jittered.",
            ge=0,
            le=MAX_VISIBILITY_TIMEOUT_S,
        ),
    )
    retry_max_delay_s: int = field(
        default=900,
        metadata=described(
            "The longest hand-back delay after a transient failure, seconds.",
            ge=0,
            le=MAX_VISIBILITY_TIMEOUT_S,
        ),
    )
    grace_period_s: float = field(
        default=30.0,
        metadata=described(
            "After SIGTERM/SIGINT: seconds in-flight lifecycles may run on before they are "
            "cancelled and their messages handed back (visible at once) for another worker to "
            "resume. A second signal skips the rest. Keep your orchestrator's termination "
            "grace period above this.",
            ge=0,
        ),
    )
    request_ttl_s: float = field(
        default=300.0,
        metadata=described(
            "A request not started within this many seconds of being sent (the message's "
            "SentTimestamp) ends with request.expired and never reaches Connect: a customer who "
            'pressed "call us" five minutes ago has gone. 0: never. A redelivery whose '
            "contact may already exist is never expired.",
            ge=0,
        ),
    )
    request_defaults: RequestDefaults = field(default_factory=RequestDefaults)
    #: Back-off bounds of the receive loop after errors, and of a lifecycle retried in place
    #: while the deployment is at fault.
    receive_backoff_s: tuple[float, float] = (1.0, 30.0)
    fault_backoff_s: tuple[float, float] = (1.0, 30.0)
    #: How often the redrive policy is read again once known.
    redrive_refresh_s: float = 300.0
    progress_interval_s: float = field(
        default=30.0,
        metadata=described(
            "A worker.progress log line (in flight, waiting to start, the most waiting since "
            "the last line, waiting for capacity, deployment faults, done) this often while "
            "the numbers change.",
            gt=0,
        ),
    )

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True)
class WorkerStatus:
    """What `/healthz` and `/readyz` read, from another thread: replaced whole, never mutated."""

    running: bool = False
    stopping: bool = False
    receiving: bool = False
    #: True while admission holds the receive loop back on purpose (busy, not stalled).
    paused: bool = False
    #: Consecutive failed receives (0 when the queue answers).
    receive_failures: int = 0
    #: Monotonic time the receive loop last made progress (or was idle by design).
    last_progress: float = 0.0


class Worker:
    """Runs until `stop()`, or (drain mode) until the queue is empty and nothing is in flight."""

    def __init__(
        self,
        source: QueueSource,
        engine: LifecycleEngine,
        options: WorkerOptions | None = None,
        *,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        readiness: ReadinessBoard | None = None,
        capacity: CapacityGate | None = None,
        services: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    ) -> None:
        self.engine = engine
        self.options = options or WorkerOptions()
        self.metrics = metrics or engine.metrics
        #: Where this worker and the parts assembled with it report to `/readyz`.
        self.readiness = readiness or ReadinessBoard()
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        #: The instance's concurrent-call cap as the Connect gateway sees it.
        self._capacity = capacity or CapacityGate(clock=self._clock)
        #: Loops that live as long as the worker (contact-events consumer, fleet heartbeats):
        #: started in its task group, cancelled once the last lifecycle is done or handed back.
        self._services = tuple(services)
        self.leases = Leases(
            source,
            visibility_timeout_s=self.options.visibility_timeout_s,
            unstarted_visibility_timeout_s=self.options.unstarted_visibility_timeout_s,
            metrics=self.metrics,
            clock=self._clock,
        )
        self._stop = anyio.Event()
        self._force = anyio.Event()
        #: Set while no ReceiveMessage is pending: hand-backs at shutdown wait for it, or the
        #: pending long poll could take the handed-back messages and hide them.
        self._poll_idle = anyio.Event()
        self._poll_idle.set()
        self._redrive_known = anyio.Event()
        self._receive_scope: anyio.CancelScope | None = None
        self._max_receives = self.options.max_receive_count
        self._has_redrive = False
        #: Deployment faults in progress (reason -> lifecycles retrying in place).
        self._faults: dict[str, int] = {}
        self._fault_cleared = anyio.Event()
        self._done = 0
        self.status = WorkerStatus(last_progress=self._clock.monotonic())

    @property
    def source(self) -> QueueSource:
        return self.leases.source

    @source.setter
    def source(self, source: QueueSource) -> None:
        self.leases.source = source

    # -- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop. Safe to call any number of times; the second call also skips
        what is left of the grace period."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()
        self._publish(stopping=True)
        if self._receive_scope is not None:
            # Let the pending long poll return what it took (it goes back at once) rather than
            # abandon it with messages in it; only a wedged one is cut off.
            self._receive_scope.deadline = min(
                self._receive_scope.deadline,
                anyio.current_time() + self.options.wait_time_s + _POLL_MARGIN_S,
            )

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def in_flight(self) -> int:
        return len(self.leases)

    def _publish(self, **changes: Any) -> None:
        self.status = dataclasses.replace(self.status, **changes)

    def _progress(self, **changes: Any) -> None:
        self._publish(last_progress=self._clock.monotonic(), **changes)

    # -- main loop -----------------------------------------------------------------------------

    async def run(self, *, drain: bool = False) -> None:
        """Process messages until stopped (or, with `drain=True`, until the queue is empty)."""
        self._publish(running=True)
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self.leases.heartbeat)
                outer.start_soon(self._redrive_policy)
                outer.start_soon(self._progress_lines)
                for service in self._services:
                    outer.start_soon(service)
                async with anyio.create_task_group() as lifecycles:
                    await wait_first(self._redrive_known, self._stop)
                    if self._redrive_known.is_set():
                        await self._receive_loop(lifecycles, drain=drain)
                    await self._drain_in_flight()
                    lifecycles.cancel_scope.cancel()
                outer.cancel_scope.cancel()
        finally:
            self._publish(running=False, receiving=False)
            log.info("worker.stopped", in_flight=self.in_flight)

    async def _redrive_policy(self) -> None:
        """Read the redrive policy until it is known, then again every `redrive_refresh_s`."""
        failures = 0
        while True:
            try:
                found = await self.source.max_receive_count()
            except Exception as exc:
                failures += 1
                log.warning(
                    "queue.redrive_policy_unreadable",
                    error=repr(exc),
                    known=self._redrive_known.is_set(),
                    detail="the worker does not receive until it knows where poison messages go"
                    if not self._redrive_known.is_set()
                    else "keeping the policy read before",
                )
                if not self._redrive_known.is_set():
                    self.readiness.fail(QUEUE_PART, f"redrive policy unreadable: {exc!r}")
                await self._clock.sleep(self._backoff(self.options.receive_backoff_s, failures))
                continue
            failures = 0
            if not self._redrive_known.is_set() or (found is not None) != self._has_redrive:
                self._announce_redrive(found)
            self._has_redrive = found is not None
            self._max_receives = found or self.options.max_receive_count
            self.readiness.ok(QUEUE_PART)
            self._redrive_known.set()
            await self._clock.sleep(self.options.redrive_refresh_s)

    def _announce_redrive(self, found: int | None) -> None:
        if found is not None:
            log.info("queue.redrive_policy", max_receive_count=found)
            return
        log.warning(
            "queue.no_redrive_policy",
            detail="invalid messages are deleted after their last attempt instead of going "
            "to a dead-letter queue",
            max_receive_count=self.options.max_receive_count,
        )

    def _room(self) -> int:
        """How many messages the worker may take now (admission by start capacity)."""
        opts = self.options
        if self._faults:
            return 0
        waiting = self.leases.waiting_to_start
        if self._capacity.blocked:
            # At the cap: one held request is enough to probe for capacity freeing up.
            return 1 if waiting == 0 and len(self.leases) < opts.max_in_flight else 0
        return min(opts.max_in_flight - len(self.leases), opts.max_waiting_to_start - waiting)

    async def _receive_loop(self, lifecycles: TaskGroup, *, drain: bool) -> None:
        opts = self.options
        self._publish(receiving=True)
        while not self._stop.is_set():
            room = self._room()
            self.metrics.capacity_blocked.set(1 if self._capacity.blocked else 0)
            if room <= 0:
                self._progress(paused=True)
                await wait_first(
                    self.leases.changed,
                    self._capacity.changed,
                    self._fault_cleared,
                    self._stop,
                )
                self._progress(paused=False)
                continue
            # An empty answer proves the queue drained only if nothing was held when we asked:
            # a message handed back during a long poll may not show up in that poll.
            idle_when_asked = not self.leases and not self.leases.settling
            self._poll_idle = anyio.Event()
            messages: list[QueueMessage] = []
            try:
                with anyio.CancelScope() as self._receive_scope:
                    messages = await self.source.receive(
                        min(10, room),
                        wait_time_s=opts.wait_time_s,
                        visibility_timeout_s=self.leases.unstarted_timeout,
                    )
                if self._receive_scope.cancelled_caught:
                    log.error("queue.receive_abandoned", detail="no answer after the long poll")
            except Exception as exc:
                failures = self.status.receive_failures + 1
                self.metrics.receive_errors.inc()
                delay = self._backoff(opts.receive_backoff_s, failures)
                log.error(
                    "queue.receive_failed",
                    error=repr(exc),
                    consecutive_failures=failures,
                    retry_in_s=delay,
                )
                self._progress(receive_failures=failures)
                await self._clock.sleep(delay, self._stop)
                continue
            finally:
                self._receive_scope = None
                self._poll_idle.set()
            self._progress(receive_failures=0)
            self.metrics.last_receive.set(self._clock.time())
            if self._stop.is_set():
                # Stopped during the long poll: what it returned goes straight back.
                for message in messages:
                    lifecycles.start_soon(self._return_unopened, message)
                break
            if not messages:
                if drain and idle_when_asked and not self.leases and not self.leases.settling:
                    break
                continue
            self.metrics.messages_received.inc(len(messages))
            for message in messages:
                lease = self.leases.take(message)
                lifecycles.start_soon(self._handle, lease, name=f"lifecycle:{message.message_id}")
        self._publish(receiving=False)

    async def _return_unopened(self, message: QueueMessage) -> None:
        self.leases.take(message)
        await self.leases.hand_back(message, 0, reason="shutdown")

    async def _drain_in_flight(self) -> None:
        """Hand back what has not started at once; let started lifecycles finish within the
        grace period (or until a second stop)."""
        for lease in self.leases.unstarted():
            lease.scope.cancel()
        if not self.leases:
            return
        log.info(
            "worker.draining", in_flight=self.in_flight, grace_period_s=self.options.grace_period_s
        )
        with anyio.move_on_after(self.options.grace_period_s):
            while self.leases:
                await wait_first(self.leases.changed, self._force)
                if self._force.is_set():
                    break
        if self.leases:
            log.warning("worker.grace_period_over", handing_back=self.in_flight)

    async def _progress_lines(self) -> None:
        """A periodic line while work is in flight: in flight, waiting to start, capacity, done."""
        last = None
        while True:
            await self._clock.sleep(self.options.progress_interval_s)
            now = (len(self.leases), self.leases.waiting_to_start, self._done)
            if now != last:
                log.info(
                    "worker.progress",
                    in_flight=now[0],
                    waiting_to_start=now[1],
                    most_waiting_to_start=self.leases.most_waiting(),
                    waiting_for_capacity=self._capacity.blocked,
                    deployment_faults=sorted(self._faults),
                    done=now[2],
                )
            last = now

    # -- one message ---------------------------------------------------------------------------

    async def _handle(self, lease: Lease) -> None:
        message = lease.message
        with structlog.contextvars.bound_contextvars(
            message_id=message.message_id, receive_count=message.receive_count
        ):
            try:
                with lease.scope:
                    await self._process(lease)
                    return
                # Cancelled by the drain (not started at shutdown): back at once.
                await self._shutdown_hand_back(message)
            except anyio.get_cancelled_exc_class():
                await self._shutdown_hand_back(message)
                raise
            finally:
                self.leases.drop(message)

    async def _shutdown_hand_back(self, message: QueueMessage) -> None:
        if not self.leases.holds(message):  # settled already (an ack that outran the cancel)
            return
        with anyio.CancelScope(shield=True):
            await self._poll_idle.wait()
            await self.leases.hand_back(message, 0, reason="shutdown")

    def _final_attempt(self, message: QueueMessage) -> bool:
        return message.receive_count >= self._max_receives

    def _expiry(self, message: QueueMessage, request: CallRequest) -> Expiry | None:
        """The request's shelf life, unless its contact may already exist (a redelivery)."""
        if message.receive_count > 1:
            return None
        limits: list[tuple[float, str]] = []
        ttl = self.options.request_ttl_s
        if ttl > 0 and message.sent_at is not None:
            limits.append((message.sent_at + ttl, f"request_ttl_s={ttl:g}"))
        if request.expires_at is not None:
            stamp = request.expires_at.astimezone(UTC)
            limits.append((stamp.timestamp(), "ExpiresAt=" + stamp.isoformat()))
        if not limits:
            return None
        not_after, limit = min(limits)
        return Expiry(not_after, limit, sent_at=message.sent_at)

    async def _process(self, lease: Lease) -> None:
        message = lease.message
        try:
            request = parse_request(message.body, self.options.request_defaults)
        except RequestRejected as rejected:
            # Keep only the errors: the traceback's frames and the chained ValidationError hold
            # the whole parsed body (about 20 times its size) while the rejection waits on sinks.
            rejected.__traceback__ = None
            rejected.__context__ = None
            self.leases.mark_started(lease)
            await self._reject(message, rejected)
            return
        final_attempt = self._final_attempt(message)
        expiry = self._expiry(message, request)
        priority = message.sent_at if message.sent_at is not None else self._clock.time()
        retries = 0
        fault: str | None = None
        try:
            while True:
                try:
                    final = await self.engine.run(
                        request,
                        final_attempt=final_attempt,
                        priority=priority,
                        expiry=expiry,
                        announce=retries == 0,
                        on_started=lambda: self.leases.mark_started(lease),
                    )
                except (DeploymentFault, SinkError) as exc:
                    error = (
                        exc if isinstance(exc, DeploymentFault) else DeploymentFault("sink", exc)
                    )
                    if fault is None:
                        fault = error.reason
                        self._enter_fault(fault)
                    retries += 1
                    if not await self._wait_out_fault(error, retries):
                        await self._hand_back(message, 0, reason=error.reason)
                        return
                    continue
                except RetryLater as exc:
                    await self._retry_later(message, "transient", exc)
                    return
                except Exception as exc:  # a bug must not take the worker down with it
                    log.exception("worker.unexpected_error", request_id=request.request_id)
                    await self._retry_later(message, "error", exc)
                    return
                break
        finally:
            if fault is not None:
                self._leave_fault(fault)
        self._deployment_works()
        if final.type is EventType.FAILED and final.data.get("transient"):
            self._given_up(message, "transient", request_id=request.request_id)
        if await self.leases.ack(message):
            self._done += 1

    # -- deployment faults ---------------------------------------------------------------------

    def _enter_fault(self, reason: str) -> None:
        if not self._faults:
            self._fault_cleared = anyio.Event()
        self._faults[reason] = self._faults.get(reason, 0) + 1

    def _leave_fault(self, reason: str) -> None:
        self._faults[reason] -= 1
        if not self._faults[reason]:
            del self._faults[reason]
        if not self._faults:
            self._fault_cleared.set()

    async def _wait_out_fault(self, fault: DeploymentFault, retries: int) -> bool:
        """Report the fault and pause before retrying in place. False when the worker stops."""
        self.metrics.deployment_faults.labels(fault.reason).inc()
        self.readiness.fail(DEPLOYMENT_PART, f"{fault.reason}: {fault.cause}")
        delay = self._backoff(self.options.fault_backoff_s, retries)
        log.error(
            "worker.deployment_fault",
            reason=fault.reason,
            error=str(fault.cause),
            retry_in_s=round(delay, 2),
            detail="no request is ended for this; new messages wait in the queue",
        )
        await self._clock.sleep(delay, self._stop)
        return not self._stop.is_set()

    def _deployment_works(self) -> None:
        report = self.readiness.snapshot().get(DEPLOYMENT_PART)
        if report is not None and not report.ok:
            log.info("worker.deployment_fault_cleared")
            self.readiness.ok(DEPLOYMENT_PART)

    # -- outcomes ------------------------------------------------------------------------------

    async def _reject(self, message: QueueMessage, rejected: RequestRejected) -> None:
        log.warning(
            "request.invalid_message",
            request_id=rejected.request_id,
            receive_count=message.receive_count,
            errors=[e.as_dict() for e in rejected.errors[:20]],
        )
        try:
            await self.engine.reject(rejected.request_id, rejected.errors)
        except SinkError as exc:
            await self._retry_later(message, "sink", exc)
            return
        last_attempt = not self._has_redrive and self._final_attempt(message)
        if self.options.delete_rejected or last_attempt:
            await self.leases.ack(message)
        else:
            # Straight back to the queue: its redrive policy moves it to the dead-letter queue.
            await self._hand_back(message, 0, reason="rejected")

    def retry_delay_s(self, receive_count: int) -> int:
        """Hand-back delay after a transient failure: doubles per receive, capped, jittered."""
        opts = self.options
        base = min(
            opts.retry_max_delay_s, opts.retry_base_delay_s * 2 ** min(receive_count - 1, 20)
        )
        return int(min(43_200, base * self._rng.uniform(0.8, 1.0)))

    def _backoff(self, bounds: tuple[float, float], failures: int) -> float:
        low, high = bounds
        return float(min(high, low * 2.0 ** min(failures - 1, 10)))

    async def _retry_later(self, message: QueueMessage, reason: str, exc: Exception) -> None:
        delay = self.retry_delay_s(message.receive_count)
        log.warning(
            "worker.handing_back",
            reason=reason,
            error=str(exc),
            receive_count=message.receive_count,
            delay_s=delay,
        )
        await self._hand_back(message, delay, reason=reason)

    async def _hand_back(self, message: QueueMessage, delay_s: int, *, reason: str) -> None:
        if self._has_redrive and self._final_attempt(message) and reason != "rejected":
            self._given_up(message, reason)
        await self.leases.hand_back(message, delay_s, reason=reason)

    def _given_up(self, message: QueueMessage, reason: str, **context: Any) -> None:
        """The message is on its last allowed receive and this attempt did not finish it."""
        self.metrics.messages_given_up.labels(reason).inc()
        log.warning(
            "message.given_up",
            reason=reason,
            receive_count=message.receive_count,
            max_receive_count=self._max_receives,
            sent_at=None
            if message.sent_at is None
            else datetime.fromtimestamp(message.sent_at, UTC).isoformat(),
            detail="request.failed was emitted"
            if reason == "transient"
            else "the queue's redrive policy moves it to the dead-letter queue",
            **context,
        )
