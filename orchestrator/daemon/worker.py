"""The worker: receives call requests from a queue and runs one lifecycle per message.

Data flows one way: queue source -> request validation -> lifecycle engine -> sinks -> ack.

* Receives only what it can start: `min(10, free slots)` messages per call, `max_in_flight` at most.
* Keeps each message hidden while its lifecycle runs (a heartbeat extends visibility, batched).
* Acknowledges (deletes) a message only after its final event reached the sinks. A transient
  failure hands the message back with a delay that grows with its receive count; a message that is
  not a valid request gets `request.rejected` and goes back to the queue so the redrive policy
  moves it to the dead-letter queue (or is deleted, if so configured).
* `stop()` (idempotent; a signal handler only calls it) stops receiving and lets in-flight
  lifecycles finish within the grace period, then cancels the rest and hands their messages back
  at once, so another worker resumes them with the same ClientToken. A second `stop()` skips the
  rest of the grace period. Acks and hand-backs are shielded from cancellation.
* The receive loop survives every error (credentials, network, missing queue): it logs, backs off
  and tries again.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup

from orchestrator.clock import Clock, SystemClock
from orchestrator.daemon.readiness import ReadinessBoard
from orchestrator.daemon.source import QueueMessage, QueueSource
from orchestrator.engine.lifecycle import LifecycleEngine
from orchestrator.engine.request import RequestDefaults, RequestRejected, parse_request
from orchestrator.errors import RetryLater, SinkError
from orchestrator.metrics import Metrics

log = structlog.get_logger("orchestrator.daemon.worker")


@dataclass(frozen=True)
class WorkerOptions:
    max_in_flight: int = 1000
    wait_time_s: float = 20.0
    visibility_timeout_s: int = 60
    #: Used when the queue has no redrive policy to read it from.
    max_receive_count: int = 5
    delete_rejected: bool = False
    retry_base_delay_s: int = 10
    retry_max_delay_s: int = 900
    grace_period_s: float = 30.0
    request_defaults: RequestDefaults = field(default_factory=RequestDefaults)
    #: Back-off bounds of the receive loop after errors.
    receive_backoff_s: tuple[float, float] = (1.0, 30.0)


@dataclass
class _InFlight:
    message: QueueMessage
    visible_until: float
    #: Set while a visibility extension is on its way, so a hand-back can wait for it.
    extending: anyio.Event | None = None

    async def settled(self) -> None:
        """Wait for an extension in progress: it must not land after a hand-back."""
        if self.extending is not None:
            await self.extending.wait()


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
        services: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    ) -> None:
        self.source = source
        #: Where this worker and the parts assembled with it report to `/readyz`.
        self.readiness = readiness or ReadinessBoard()
        #: Loops that live as long as the worker (contact-events consumer, fleet heartbeats):
        #: started in its task group, cancelled once the last lifecycle is done or handed back.
        self._services = tuple(services)
        self.engine = engine
        self.options = options or WorkerOptions()
        self.metrics = metrics or engine.metrics
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._stop = anyio.Event()
        self._force = anyio.Event()
        self._slot_freed = anyio.Event()
        self._in_flight: dict[str, _InFlight] = {}
        #: Acks and hand-backs on their way to the queue (no longer in flight, not yet settled).
        self._settling = 0
        self._receive_scope: anyio.CancelScope | None = None
        self._max_receives = self.options.max_receive_count
        self._has_redrive = False
        self.running = False
        self.receiving = False
        #: True while the receive loop waits for a free slot (busy, not stalled).
        self.waiting_for_slot = False
        #: Consecutive failed receives (0 when the queue answers).
        self.receive_failures = 0
        #: Monotonic time the receive loop last finished a receive (or was idle by design).
        self.last_progress = self._clock.monotonic()

    # -- control -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop. Safe to call any number of times; the second call also skips
        what is left of the grace period."""
        if self._stop.is_set():
            self._force.set()
        self._stop.set()
        if self._receive_scope is not None:
            self._receive_scope.cancel()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # -- main loop -----------------------------------------------------------------------------

    async def run(self, *, drain: bool = False) -> None:
        """Process messages until stopped (or, with `drain=True`, until the queue is empty)."""
        self.running = True
        try:
            await self._read_redrive_policy()
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._heartbeat)
                for service in self._services:
                    outer.start_soon(service)
                async with anyio.create_task_group() as lifecycles:
                    await self._receive_loop(lifecycles, drain=drain)
                    await self._drain_in_flight()
                    lifecycles.cancel_scope.cancel()
                outer.cancel_scope.cancel()
        finally:
            self.running = False
            self.receiving = False
            log.info("worker.stopped", in_flight=self.in_flight)

    async def _read_redrive_policy(self) -> None:
        try:
            found = await self.source.max_receive_count()
        except Exception as exc:  # permissions or a missing queue: fall back to the setting
            log.warning("queue.redrive_policy_unreadable", error=repr(exc))
            found = None
        self._has_redrive = found is not None
        self._max_receives = found or self.options.max_receive_count
        if not self._has_redrive:
            log.warning(
                "queue.no_redrive_policy",
                detail="invalid messages are deleted after their last attempt instead of going "
                "to a dead-letter queue",
                max_receive_count=self._max_receives,
            )

    async def _receive_loop(self, lifecycles: TaskGroup, *, drain: bool) -> None:
        opts = self.options
        self.receiving = True
        while not self._stop.is_set():
            free = opts.max_in_flight - len(self._in_flight)
            if free <= 0:
                self.waiting_for_slot = True
                try:
                    await self._wait_for_slot()
                finally:
                    self.waiting_for_slot = False
                    self.last_progress = self._clock.monotonic()
                continue
            messages: list[QueueMessage] | None = None
            # An empty answer proves the queue drained only if nothing was in flight when we
            # asked: a message handed back during a long poll may not show up in that poll.
            idle_when_asked = not self._in_flight and not self._settling
            with anyio.CancelScope() as scope:
                self._receive_scope = scope
                if self._stop.is_set():
                    scope.cancel()
                try:
                    messages = await self.source.receive(
                        min(10, free),
                        wait_time_s=opts.wait_time_s,
                        visibility_timeout_s=opts.visibility_timeout_s,
                    )
                except Exception as exc:
                    self.receive_failures += 1
                    self.metrics.receive_errors.inc()
                    delay = min(
                        opts.receive_backoff_s[1],
                        opts.receive_backoff_s[0] * 2 ** min(self.receive_failures - 1, 10),
                    )
                    log.error(
                        "queue.receive_failed",
                        error=repr(exc),
                        consecutive_failures=self.receive_failures,
                        retry_in_s=delay,
                    )
                    self.last_progress = self._clock.monotonic()
                    await self._clock.sleep(delay, self._stop)
                    continue
            self._receive_scope = None
            if messages is None:  # cancelled by stop()
                break
            self.receive_failures = 0
            self.last_progress = self._clock.monotonic()
            self.metrics.last_receive.set(self._clock.time())
            if not messages:
                if drain and idle_when_asked and not self._in_flight and not self._settling:
                    break
                continue
            self.metrics.messages_received.inc(len(messages))
            for message in messages:
                now = self._clock.monotonic()
                self._in_flight[message.receipt] = _InFlight(
                    message, now + opts.visibility_timeout_s
                )
                self.metrics.in_flight.inc()
                lifecycles.start_soon(self._handle, message, name=f"lifecycle:{message.message_id}")
        self.receiving = False

    async def _wait_for_slot(self) -> None:
        self._slot_freed = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def on_stop() -> None:
                await self._stop.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(on_stop)
            await self._slot_freed.wait()
            tg.cancel_scope.cancel()

    async def _drain_in_flight(self) -> None:
        """Let running lifecycles finish within the grace period (or until a second stop)."""
        if not self._in_flight:
            return
        log.info(
            "worker.draining", in_flight=self.in_flight, grace_period_s=self.options.grace_period_s
        )
        with anyio.move_on_after(self.options.grace_period_s):
            async with anyio.create_task_group() as tg:

                async def on_force() -> None:
                    await self._force.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(on_force)
                while self._in_flight:
                    self._slot_freed = anyio.Event()
                    await self._slot_freed.wait()
                tg.cancel_scope.cancel()
        if self._in_flight:
            log.warning("worker.grace_period_over", handing_back=self.in_flight)

    # -- one message ---------------------------------------------------------------------------

    async def _handle(self, message: QueueMessage) -> None:
        with structlog.contextvars.bound_contextvars(message_id=message.message_id):
            try:
                await self._process(message)
            except anyio.get_cancelled_exc_class():
                await self._hand_back(message, 0, reason="shutdown")
                raise
            finally:
                self._in_flight.pop(message.receipt, None)
                self.metrics.in_flight.dec()
                self._slot_freed.set()

    async def _process(self, message: QueueMessage) -> None:
        try:
            request = parse_request(message.body, self.options.request_defaults)
        except RequestRejected as rejected:
            # Keep only the errors: the traceback's frames and the chained ValidationError hold
            # the whole parsed body (about 20 times its size) while the rejection waits on sinks.
            rejected.__traceback__ = None
            rejected.__context__ = None
            await self._reject(message, rejected)
            return
        final_attempt = message.receive_count >= self._max_receives
        try:
            await self.engine.run(request, final_attempt=final_attempt)
        except RetryLater as exc:
            await self._retry_later(message, "transient", exc)
            return
        except SinkError as exc:
            await self._retry_later(message, "sink", exc)
            return
        except Exception as exc:  # a bug must not take the worker down with it
            log.exception("worker.unexpected_error", request_id=request.request_id)
            await self._retry_later(message, "error", exc)
            return
        await self._ack(message)

    async def _reject(self, message: QueueMessage, rejected: RequestRejected) -> None:
        log.warning(
            "request.invalid_message",
            request_id=rejected.request_id,
            receive_count=message.receive_count,
            errors=[e.as_dict() for e in rejected.errors[:20]],
        )
        if rejected.request_id is not None:
            try:
                await self.engine.reject(rejected.request_id, rejected.errors)
            except SinkError as exc:
                await self._retry_later(message, "sink", exc)
                return
        else:
            self.metrics.requests.labels("request.rejected").inc()
        last_attempt = not self._has_redrive and message.receive_count >= self._max_receives
        if self.options.delete_rejected or last_attempt:
            await self._ack(message)
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

    async def _ack(self, message: QueueMessage) -> None:
        tracked = self._in_flight.pop(message.receipt, None)
        self._settling += 1
        try:
            with anyio.CancelScope(shield=True):
                if tracked is not None:
                    await tracked.settled()
                try:
                    await self.source.delete(message)
                except Exception as exc:
                    # The message reappears after its visibility timeout and is processed
                    # again: same ClientTokens, same contact, duplicate events with the same ids.
                    log.error("queue.delete_failed", error=repr(exc))
                    return
        finally:
            self._settling -= 1
        self.metrics.messages_acknowledged.inc()

    async def _hand_back(self, message: QueueMessage, delay_s: int, *, reason: str) -> None:
        tracked = self._in_flight.pop(message.receipt, None)
        self._settling += 1
        try:
            with anyio.CancelScope(shield=True):
                if tracked is not None:
                    await tracked.settled()
                try:
                    await self.source.change_visibility(message, delay_s)
                except Exception as exc:
                    log.error("queue.hand_back_failed", error=repr(exc), reason=reason)
                    return
        finally:
            self._settling -= 1
        self.metrics.messages_handed_back.labels(reason).inc()

    # -- visibility heartbeat ------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Extend the visibility of messages whose lifecycle outlives half the timeout."""
        timeout = self.options.visibility_timeout_s
        interval = max(0.5, timeout / 12)
        while True:
            await self._clock.sleep(interval)
            now = self._clock.monotonic()
            due = [t for t in self._in_flight.values() if t.visible_until - now < timeout / 2]
            if due:
                async with anyio.create_task_group() as tg:
                    for tracked in due:
                        tg.start_soon(self._extend, tracked)

    async def _extend(self, tracked: _InFlight) -> None:
        timeout = self.options.visibility_timeout_s
        asked_at = self._clock.monotonic()
        tracked.extending = anyio.Event()
        try:
            await self.source.change_visibility(tracked.message, timeout)
        except Exception as exc:
            if tracked.message.receipt in self._in_flight:  # still ours: retried next beat
                self.metrics.visibility_extensions.labels("error").inc()
                log.warning(
                    "queue.visibility_extension_failed",
                    message_id=tracked.message.message_id,
                    error=repr(exc),
                )
            return
        finally:
            tracked.extending.set()
            tracked.extending = None
        tracked.visible_until = asked_at + timeout
        self.metrics.visibility_extensions.labels("ok").inc()
