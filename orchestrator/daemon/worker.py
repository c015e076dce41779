"""The worker: receives call requests from a queue, admits them, runs one lifecycle per message
and settles each message once (acknowledge or hand back).

Data flows one way: queue source -> request validation -> lifecycle engine -> sinks -> ack.

* **Admission** (`policy.room`). A message is received only when its contact can be started
  soon: messages held but not started yet are bounded by `max_waiting_to_start` (derived from the
  start rate this worker may use), started lifecycles by `max_in_flight`. At the instance's
  concurrent-call cap, or while the deployment is at fault (`faults.py`: retried in place, no
  request ended), the worker takes no new work. The backlog stays in the queue.
* Keeps each message hidden while its lifecycle runs (`Leases`: a visibility heartbeat) and
  acknowledges it only after its final event reached the sinks. A transient failure hands the
  message back with a delay that grows with its receive count (`policy.py`); Connect not
  answering is no such failure: its calls wait in place (`faults.py`, the outage hold).
* A message that is not a valid request gets one `request.rejected`, on its first receive, and
  goes back at once each time so the redrive policy (`redrive.py`) moves it to the DLQ. A
  rejection waits out sinks that are down like any final event; a worker stopped meanwhile lets
  the message go on without it (`request.rejection_not_emitted`; `dlq inspect` says why).
* `stop()` (idempotent; a signal handler only calls it) stops receiving once the pending
  ReceiveMessage has returned (what it returns goes back at once; `stopping.py` bounds the wait),
  hands back the messages whose contact has not started at once, and lets started lifecycles
  finish within the grace period counted from the stop, then cancels the rest and hands their
  messages back (another worker resumes them with the same ClientToken). A second `stop()` skips
  the rest of the grace period.
* The receive loop survives every error (credentials, network, missing queue): it logs, backs off
  and tries again.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from orchestrator.clock import Clock, SystemClock, wait_first
from orchestrator.connect.capacity import CapacityGate
from orchestrator.daemon import traced
from orchestrator.daemon.cancels import Cancels
from orchestrator.daemon.faults import DeploymentFaults, StoppedDuringFault
from orchestrator.daemon.leases import Lease, Leases
from orchestrator.daemon.options import WorkerOptions
from orchestrator.daemon.policy import expiry, hand_back_delay_s, room
from orchestrator.daemon.readiness import ReadinessBoard, WorkerStatus
from orchestrator.daemon.redrive import RedriveTracker
from orchestrator.daemon.renewal import Renewals, first_sent_at
from orchestrator.daemon.stopping import poll_deadline, stop_deadline
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.lifecycle import LifecycleEngine
from orchestrator.engine.request import (
    CallRequest,
    CancelRequest,
    RequestRejected,
    parse_message,
)
from orchestrator.errors import RetryLater
from orchestrator.logcontext import bound
from orchestrator.retry import backoff_s
from orchestrator.sinks.reply import ReplyRoutes
from orchestrator.sqs import QueueMessage, QueueSource, is_missing_queue

log = structlog.get_logger("orchestrator.daemon.worker")


class Worker:
    """Runs until `stop()`, or (drain mode) until the queue is empty and nothing is in flight."""

    def __init__(
        self,
        source: QueueSource,
        engine: LifecycleEngine,
        options: WorkerOptions,
        *,
        readiness: ReadinessBoard,
        capacity: CapacityGate,
        faults: DeploymentFaults | None = None,
        services: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        replies: ReplyRoutes | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        cancels: Cancels | None = None,
    ) -> None:
        self.engine, self.options = engine, options
        #: Where the events of requests that name an allowed `ReplyTo` also go (`sinks.reply`):
        #: routed while the worker handles the request.
        self.replies = ReplyRoutes() if replies is None else replies
        #: The worker's one registry: its engine's (assembly built both on it).
        self.metrics = engine.metrics
        #: Where this worker and the parts assembled with it report to `/readyz`.
        self.readiness = readiness
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        #: The instance's concurrent-call cap as the Connect gateway sees it.
        self._capacity = capacity
        #: Loops that live as long as the worker (contact-events consumer, fleet heartbeats):
        #: started in its task group, cancelled once the last lifecycle is done or handed back.
        self._services = tuple(services)
        self.cancels = cancels or Cancels(engine, self.options.request_ttl_s, clock=self._clock)
        self.leases = Leases(
            source,
            visibility_timeout_s=self.options.visibility_timeout_s,
            unstarted_visibility_timeout_s=self.options.unstarted_visibility_timeout_s,
            metrics=self.metrics,
            clock=self._clock,
        )
        #: Deployment faults in progress (`faults.py`; assembly shares it with the gateway).
        self.faults = faults or DeploymentFaults(
            readiness=self.readiness,
            metrics=self.metrics,
            clock=self._clock,
            backoff_bounds_s=self.options.fault_backoff_s,
        )
        self._stop = self.faults.stop
        self._force = anyio.Event()
        #: When the grace period of a stop ends (`anyio.current_time()`; set by the first stop).
        self._stop_deadline = math.inf
        #: Set while no ReceiveMessage is pending: hand-backs at shutdown wait for it, or the
        #: pending long poll could take the handed-back messages and hide them.
        self._poll_idle = anyio.Event()
        self._poll_idle.set()
        self._receive_scope: anyio.CancelScope | None = None
        self.redrive = RedriveTracker(
            read=lambda: self.source.max_receive_count(),  # noqa: PLW0108 (a swapped source)
            fallback_max_receives=self.options.max_receive_count,
            readiness=self.readiness,
            clock=self._clock,
            backoff_s=self._receive_backoff_s,
            refresh_s=self.options.redrive_refresh_s,
            metrics=self.metrics,
            queue_url=getattr(source, "queue_url", None),
        )
        self.renewals = Renewals(self.metrics)
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
        else:
            self._stop_deadline = stop_deadline(anyio.current_time(), self.options)
        self._stop.set()
        self._publish(stopping=True)
        for lease in self.leases.unstarted():  # back at once, not after the pending poll
            lease.scope.cancel()
        if self._receive_scope is not None:
            self._receive_scope.deadline = min(
                self._receive_scope.deadline,
                poll_deadline(anyio.current_time(), self.options),
            )

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
                outer.start_soon(self.redrive.run)
                outer.start_soon(self._progress_lines)
                for service in self._services:
                    outer.start_soon(service)
                async with anyio.create_task_group() as lifecycles:
                    await wait_first(self.redrive.known, self._stop)
                    if self.redrive.known.is_set():
                        await self._receive_loop(lifecycles, drain=drain)
                    await self._drain_in_flight()
                    lifecycles.cancel_scope.cancel()
                outer.cancel_scope.cancel()
        finally:
            self._publish(running=False, receiving=False)
            log.info("worker.stopped", in_flight=self.in_flight)

    def _room(self) -> int:
        """How many messages the worker may take now."""
        return room(
            held=len(self.leases),
            waiting_to_start=self.leases.waiting_to_start,
            max_in_flight=self.options.max_in_flight,
            max_waiting_to_start=self.options.max_waiting_to_start,
            at_capacity=self._capacity.blocked,
            faulted=self.faults.active,
        )

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
                    # Only while faulted: a set event here would spin this loop.
                    self.faults.cleared if self.faults.active else None,
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
                if is_missing_queue(exc):  # deleted since the redrive policy was read
                    self.redrive.missing(exc)
                delay = self._receive_backoff_s(failures)
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
            if self.status.receive_failures:
                self.redrive.answered()
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
                lifecycles.start_soon(
                    traced.processing,
                    self._handle,
                    lease,
                    getattr(self.source, "queue_url", None),
                    name=f"lifecycle:{message.message_id}",
                )
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
        # The grace period counts from the signal (the pending long poll ran within it); a drain
        # without a signal counts it from now.
        deadline = min(self._stop_deadline, stop_deadline(anyio.current_time(), self.options))
        with anyio.CancelScope(deadline=deadline):
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
                    deployment_faults=self.faults.reasons,
                    done=now[2],
                )
            last = now

    # -- one message ---------------------------------------------------------------------------

    async def _handle(self, lease: Lease) -> None:
        message = lease.message
        with bound(message_id=message.message_id, receive_count=message.receive_count):
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

    async def _process(self, lease: Lease) -> None:
        message = lease.message
        try:
            request = parse_message(message.body, self.options.request_defaults)
        except RequestRejected as rejected:
            # Keep only the errors: the traceback's frames and the chained ValidationError hold
            # the whole parsed body (about 20 times its size) while the rejection waits on sinks.
            rejected.__traceback__ = None
            rejected.__context__ = None
            self.leases.mark_started(lease)
            await self._reject(message, rejected)
            return
        if isinstance(request, CancelRequest):  # acknowledged once its tombstone is recorded
            failure = await self.cancels.receive(request)  # unstarted: shutdown hands it back
            self.leases.mark_started(lease)
            if failure is None:
                await self.leases.ack(message)
            else:  # the contact it names could not be stopped: it comes back
                await self._retry_later(message, "cancel_unrecorded", failure)
            return
        if await self.renewals.renew(
            self.source,
            message,
            max_receives=self.redrive.max_receives,
            has_redrive=self.redrive.has_redrive,
        ):
            await self.leases.ack(message)  # the copy carries the request on (`renewal.py`)
            return
        final_attempt = self.redrive.final_attempt(message)
        shelf_life = expiry(message, request, ttl_s=self.options.request_ttl_s)
        sent_at = first_sent_at(message)
        priority = sent_at if sent_at is not None else self._clock.time()
        request_id, reply_to = request.request_id, request.reply_to
        # The first attempt takes the parsed request, and the engine lets go of it once the
        # contact started (docs/design.md, "What a watched contact holds"); a retry in place
        # reads it again from the message.
        parsed = [request]
        del request

        def attempt(retries: int) -> Awaitable[LifecycleEvent]:
            return self.engine.run(
                parsed.pop() if parsed else self._read_again(message),
                final_attempt=final_attempt,
                priority=priority,
                expiry=shelf_life,
                announce=retries == 0,
                on_started=lambda: self.leases.mark_started(lease),
                cancellation=cancellation,
            )

        try:
            with (
                self.cancels.track(request_id, message.receive_count) as cancellation,
                self.replies.route(request_id, reply_to),
            ):
                final = await self.faults.retry_in_place(attempt)
            self.cancels.finished(request_id)
        except StoppedDuringFault as stopped:
            await self._hand_back(message, 0, reason=stopped.reason)
            return
        except Exception as exc:  # RetryLater, or a bug: it must not take the worker down
            transient = isinstance(exc, RetryLater)
            if not transient:
                log.exception("worker.unexpected_error", request_id=request_id)
            await self._retry_later(message, "transient" if transient else "error", exc)
            return
        if final.type is EventType.FAILED and final.data.get("transient"):
            self._given_up(message, "transient", request_id=request_id)
        if await self.leases.ack(message):
            self._done += 1

    def _read_again(self, message: QueueMessage) -> CallRequest:
        """The call request a message carries, parsed again (it parsed before)."""
        request = parse_message(message.body, self.options.request_defaults)
        assert isinstance(request, CallRequest)  # noqa: S101 (the same body, the same result)
        return request

    # -- outcomes ------------------------------------------------------------------------------

    async def _reject(self, message: QueueMessage, rejected: RequestRejected) -> None:
        """`request.rejected` on the message's first receive, and again on its last (the same
        event id: the first receive's worker may have died before its sinks had it); then back
        to the queue, whose redrive policy moves it to the DLQ (or deleted, see
        `delete_rejected`)."""
        first = message.receive_count == 1
        emit = first or self.redrive.final_attempt(message)
        self.cancels.rejected(rejected, first=first)
        log.warning(
            "request.invalid_message",
            request_id=rejected.request_id,
            receive_count=message.receive_count,
            errors=[e.as_dict() for e in rejected.errors[:20]],
            rejection="emitting"
            if first
            else "emitting again on the last receive"
            if emit
            else "emitted on the first receive",
        )
        try:
            if emit:
                with self.replies.route(rejected.request_id, rejected.reply_to):
                    await self.faults.retry_in_place(
                        lambda _: self.engine.reject(
                            rejected.request_id, rejected.errors, again=not first
                        )
                    )
        except StoppedDuringFault:
            log.error(
                "request.rejection_not_emitted",
                request_id=rejected.request_id,
                detail="the worker stopped while the sinks were down; the message goes on to "
                "the dead-letter queue without its request.rejected",
            )
        last_attempt = not self.redrive.has_redrive and self.redrive.final_attempt(message)
        if self.options.delete_rejected or last_attempt:
            await self.leases.ack(message)
        else:
            # Straight back to the queue: its redrive policy moves it to the dead-letter queue.
            await self._hand_back(message, 0, reason="rejected")

    def _receive_backoff_s(self, failures: int) -> float:
        first_s, max_s = self.options.receive_backoff_s
        return backoff_s(failures, first_s=first_s, max_s=max_s)

    async def _retry_later(self, message: QueueMessage, reason: str, exc: Exception) -> None:
        opts = self.options
        delay = hand_back_delay_s(
            message.receive_count,
            base_s=opts.retry_base_delay_s,
            max_s=opts.retry_max_delay_s,
            rng=self._rng,
        )
        log.warning(
            "worker.handing_back",
            reason=reason,
            error=str(exc),
            receive_count=message.receive_count,
            delay_s=delay,
        )
        await self._hand_back(message, delay, reason=reason)

    async def _hand_back(self, message: QueueMessage, delay_s: int, *, reason: str) -> None:
        if reason != "rejected" and self.redrive.dead_letters_next(message):
            self._given_up(message, reason)
        await self.leases.hand_back(message, delay_s, reason=reason)

    def _given_up(self, message: QueueMessage, reason: str, **context: Any) -> None:
        """The message is on its last allowed receive and this attempt did not finish it."""
        self.metrics.messages_given_up.labels(reason).inc()
        log.warning(
            "message.given_up",
            reason=reason,
            receive_count=message.receive_count,
            max_receive_count=self.redrive.max_receives,
            sent_at=None
            if message.sent_at is None
            else datetime.fromtimestamp(message.sent_at, UTC).isoformat(),
            detail="request.failed was emitted"
            if reason == "transient"
            else "the queue's redrive policy moves it to the dead-letter queue",
            **context,
        )
