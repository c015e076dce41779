"""The Connect gateway: the only code that calls Amazon Connect.

It spends the shared rate budget before every attempt, classifies every failure once into the
orchestrator's error classes (retryable, throttled, capacity, terminal), retries through named
policies and turns responses into small typed values. The lifecycle never sees botocore.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import aiohttp
import anyio
import structlog
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from orchestrator.bounds import Bounded, declared
from orchestrator.clock import Clock, SystemClock
from orchestrator.connect.capacity import CapacityGate
from orchestrator.connect.operations import Operation
from orchestrator.connect.outage import OutageHold, through_outage
from orchestrator.connect.ratelimit import Bucket, Budget
from orchestrator.connect.traced import traced_attempt
from orchestrator.errors import (
    CapacityError,
    ConnectError,
    ConnectUnavailable,
    DeploymentError,
    FeatureUnavailable,
    RetryableConnectError,
    StartExpired,
    StartWithdrawn,
    TerminalConnectError,
    ThrottledError,
)
from orchestrator.metrics import Metrics
from orchestrator.retry import RetryPolicy
from orchestrator.waiters import Priority, Slots

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient

log = structlog.get_logger("orchestrator.connect.gateway")

T = TypeVar("T")

#: Told that a start will not go at once: (reason "capacity" or "start_rate", estimated seconds
#: until it starts, or None when no estimate can be made).
OnWaiting = Callable[[str, float | None], Awaitable[None]]
#: A start still waiting for its StartWebRTCContact token after this long is said to wait.
WAITING_NOTICE_S = 1.0

START = Operation.START_WEBRTC_CONTACT
DESCRIBE = Operation.DESCRIBE_CONTACT
SCREEN_SHARING = Operation.START_SCREEN_SHARING
METRICS = Operation.GET_CONTACT_METRICS
STOP = Operation.STOP_CONTACT

#: StopContact's answer for a contact that is "not active or does not exist" (HTTP 410): it has
#: ended already, so a stop is idempotent.
CONTACT_NOT_FOUND = "ContactNotFoundException"

_THROTTLE_CODES = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "Throttling", "RequestLimitExceeded"}
)
#: Answers that say the deployment is wrong (permissions, credentials), not the request.
_DEPLOYMENT_CODES = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "InvalidClientTokenId",
        "ExpiredTokenException",
    }
)


def connect_client_config(max_pool_connections: int = 50) -> AioConfig:
    """Client settings for Connect: botocore's retries off (the gateway retries), tight timeouts,
    and no client-side parameter validation: `CallRequest` already applies the service model's
    limits (and more), and botocore's second pass costs CPU on every call."""
    return AioConfig(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=15,
        max_pool_connections=max_pool_connections,
        parameter_validation=False,
    )


@dataclass(frozen=True)
class StartedContact:
    """StartWebRTCContact's answer. The token and connection data are secrets (no repr)."""

    contact_id: str
    participant_id: str
    participant_token: str = field(repr=False)
    connection_data: Mapping[str, Any] = field(repr=False)


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


@dataclass(frozen=True)
class ContactSnapshot:
    """What DescribeContact says about a contact, as epoch seconds."""

    contact_id: str
    initiated_at: float | None = None
    enqueued_at: float | None = None
    queue_id: str | None = None
    agent_id: str | None = None
    agent_connected_at: float | None = None
    disconnected_at: float | None = None
    disconnect_reason: str | None = None
    customer_capabilities: Mapping[str, str] = field(default_factory=dict)
    agent_capabilities: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_api(cls, contact: Mapping[str, Any]) -> ContactSnapshot:
        queue = contact.get("QueueInfo") or {}
        agent = contact.get("AgentInfo") or {}
        customer = contact.get("Customer") or {}
        return cls(
            contact_id=contact["Id"],
            initiated_at=_epoch(contact.get("InitiationTimestamp")),
            enqueued_at=_epoch(queue.get("EnqueueTimestamp")),
            queue_id=queue.get("Id"),
            agent_id=agent.get("Id"),
            agent_connected_at=_epoch(agent.get("ConnectedToAgentTimestamp")),
            disconnected_at=_epoch(contact.get("DisconnectTimestamp")),
            disconnect_reason=contact.get("DisconnectReason"),
            customer_capabilities=dict(customer.get("Capabilities") or {}),
            agent_capabilities=dict(agent.get("Capabilities") or {}),
        )


@dataclass(frozen=True)
class ContactMetrics:
    """GetContactMetrics' answer for a contact in queue: its place in line (1: next) and
    Connect's estimate of its wait, seconds (None when Connect gave none)."""

    position: int
    estimated_wait_s: float | None

    @classmethod
    def from_api(cls, response: Mapping[str, Any]) -> ContactMetrics | None:
        """The answer's metrics; None when it holds no position (the contact is not in queue)."""
        values: dict[str, float] = {}
        for result in response.get("MetricResults") or ():
            number = (result.get("Value") or {}).get("Number")
            if isinstance(number, int | float):
                values[str(result.get("Name"))] = float(number)
        position = values.get("POSITION_IN_QUEUE")
        if position is None or position < 1:
            return None
        return cls(round(position), values.get("ESTIMATED_WAIT_TIME"))


#: GetContactMetrics' answers that mean "this contact is not (or no longer) in queue".
#: Calls someone waits on (a customer for the start, an agent for screen sharing, a stop) take the
#: next free connection ahead of polls: without that, a start queues behind hundreds of polls
#: once the polls outrun what the connections carry.
_AHEAD_OF_POLLS = frozenset({START, SCREEN_SHARING, STOP})
_NOT_IN_QUEUE = frozenset({"InvalidRequestException", "ResourceNotFoundException"})
#: Answers that mean the operation is not there for this deployment: not permitted, or not
#: offered by the endpoint (an older Connect, a partition without it, a proxy).
_UNAVAILABLE = frozenset({"UnknownOperationException", "UnrecognizedOperationException"})


class Withdrawal(Protocol):
    """A start's way out: its request may be withdrawn (cancelled) before the contact starts."""

    @property
    def requested(self) -> anyio.Event:
        """Set once withdrawn: ends a wait for the start budget or the capacity gate."""
        ...

    async def withdrawn(self) -> bool:
        """Asked before each attempt: True when no attempt may be sent any more."""
        ...


async def _unless(event: anyio.Event | None, wait: Callable[[], Awaitable[None]]) -> bool:
    """Run `wait` unless `event` is set first: False when it was (the wait was abandoned)."""
    if event is None:
        await wait()
        return True
    if event.is_set():
        return False
    done = False
    async with anyio.create_task_group() as tg:

        async def abandon() -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(abandon)
        await wait()
        done = True
        tg.cancel_scope.cancel()
    return done


class ConnectGateway(Protocol):
    """The Connect operations, as the lifecycle needs them."""

    async def start_webrtc_contact(
        self,
        params: Mapping[str, Any],
        *,
        request_id: str,
        priority: float = 0.0,
        not_after: float | None = None,
        on_waiting: OnWaiting | None = None,
        withdrawal: Withdrawal | None = None,
    ) -> StartedContact:
        """Start (or, with the same `ClientToken` in `params`, find) the request's contact;
        `StartExpired` if no attempt could be sent by `not_after` (epoch seconds),
        `StartWithdrawn` if the request was withdrawn before any attempt was sent. `on_waiting`
        is told when the start cannot go at once: the instance is at its concurrent-call cap
        ("capacity"), or its token is more than `WAITING_NOTICE_S` away ("start_rate")."""
        ...

    async def describe_contact(
        self,
        instance_id: str,
        contact_id: str,
        *,
        fresh_since: float | None,
        priority: Priority | float,
    ) -> ContactSnapshot:
        """Describe a contact; a 404 within the consistency window after `fresh_since` retries.
        `priority` may be lowered while the call waits for its token: it moves forward."""
        ...

    async def start_screen_sharing(
        self, instance_id: str, contact_id: str, client_token: str, *, fresh_since: float | None
    ) -> None:
        """Start screen sharing; InvalidRequest within the window after `fresh_since` retries."""
        ...

    async def get_contact_metrics(
        self, instance_id: str, contact_id: str, *, priority: float = 0.0
    ) -> ContactMetrics | None:
        """The contact's position in queue and estimated wait: one call, no retry (whoever asks
        asks again later). None: the contact is not in queue (not yet, or no longer).
        `FeatureUnavailable`: this deployment may not call it, or Connect does not offer it;
        `ThrottledError` and other `ConnectError`s as classified."""

    async def stop_contact(
        self,
        instance_id: str,
        contact_id: str,
        *,
        priority: Priority | float = 0.0,
        confirm: Callable[[], Awaitable[bool]] | None = None,
    ) -> bool:
        """End the contact (never with a DisconnectReason: that is for outbound campaigns).
        True once stopped; False if it had ended already (ContactNotFoundException, 410) or
        `confirm` called the stop off. `confirm` runs on every attempt once its StopContact
        token is in hand, right before the call: what it checks is then as fresh as it can be
        (a token may be seconds away when many contacts are let go at once)."""
        ...


def _default_policy(name: str, **overrides: Any) -> RetryPolicy:
    """A Connect call's policy: retries transient errors; attempts and time as `RetryPolicy`'s."""
    options: dict[str, Any] = {"initial_s": 0.25, "max_backoff_s": 5.0, **overrides}
    return RetryPolicy(name, retry_on=(RetryableConnectError,), **options)


@dataclass(frozen=True)
class GatewayPolicies(Bounded):
    """How each Connect call is retried. `bounded(...)` builds them from the settings."""

    start: RetryPolicy = field(
        default_factory=lambda: _default_policy("connect.start_webrtc_contact")
    )
    capacity_max_wait_s: float = declared(
        RetryPolicy.capacity_max_time_s,
        "How long StartWebRTCContact keeps retrying while the instance is at its "
        "concurrent-call cap.",
        gt=0,
    )
    describe: RetryPolicy = field(default_factory=lambda: _default_policy("connect.describe"))
    screen_sharing: RetryPolicy = field(
        default_factory=lambda: _default_policy("connect.start_screen_sharing")
    )
    stop: RetryPolicy = field(default_factory=lambda: _default_policy("connect.stop_contact"))
    consistency_window_s: float = declared(
        10.0,
        "A 404 (or InvalidRequest) right after a contact was created or connected is "
        "retried for this many seconds (eventual consistency).",
        ge=0,
    )

    @classmethod
    def bounded(
        cls,
        *,
        max_attempts: int,
        max_time_s: float,
        capacity_max_wait_s: float,
        consistency_window_s: float,
    ) -> GatewayPolicies:
        """Policies with the given retry bounds (the capacity wait applies to the start call)."""
        bounds: dict[str, Any] = {"max_attempts": max_attempts, "max_time_s": max_time_s}
        return cls(
            start=_default_policy("connect.start_webrtc_contact", **bounds),
            capacity_max_wait_s=capacity_max_wait_s,
            describe=_default_policy("connect.describe", **bounds),
            screen_sharing=_default_policy("connect.start_screen_sharing", **bounds),
            stop=_default_policy("connect.stop_contact", **bounds),
            consistency_window_s=consistency_window_s,
        )


#: Transport failures: the request may or may not have reached Connect. Retryable, since every
#: mutating call carries a ClientToken.
TRANSPORT_ERRORS = (BotoCoreError, aiohttp.ClientError, TimeoutError, OSError)
#: Answers that mean "not there yet" right after a contact was created or changed.
_EVENTUALLY_CONSISTENT = frozenset({"ResourceNotFoundException", "InvalidRequestException"})


def _client_error_class(
    operation: str, code: str, message: str, status: int, fresh: bool
) -> type[ConnectError]:
    if code in _DEPLOYMENT_CODES or (code.isdigit() and status < 500 and status != 429):
        # A bare status as the code: the answer had no AWS error shape (an HTML page from a
        # proxy or a wrong endpoint), so whatever answered is not Connect.
        return DeploymentError
    if code == "LimitExceededException" and operation == START:
        # Connect answers both "too many calls per second" and "instance at its concurrent
        # call cap" with this code; only the message tells them apart.
        return CapacityError if "concurren" in message.lower() else ThrottledError
    if code in _THROTTLE_CODES or status == 429:
        return ThrottledError
    if status >= 500:
        return ConnectUnavailable
    if fresh and code in _EVENTUALLY_CONSISTENT:
        return RetryableConnectError
    return TerminalConnectError


def classify(operation: str, error: BaseException, *, fresh: bool = False) -> ConnectError:
    """Map any failure of a Connect call to one of the orchestrator's error classes."""
    if not isinstance(error, ClientError):
        if isinstance(error, NoCredentialsError | PartialCredentialsError):
            return DeploymentError(operation, type(error).__name__, str(error))
        # botocore refused the parameters before sending anything: the same call fails again.
        transport = isinstance(error, TRANSPORT_ERRORS) and not isinstance(
            error, ParamValidationError
        )
        kind = ConnectUnavailable if transport else TerminalConnectError
        return kind(operation, type(error).__name__, str(error))
    info = error.response.get("Error", {})
    code = str(info.get("Code") or "Unknown")
    message = str(info.get("Message") or "")
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return _client_error_class(operation, code, message, status, fresh)(operation, code, message)


class _Prepaid:
    """What a call took for its first attempt before the call was set up: the rate-budget token,
    and perhaps a connection. The first attempt claims them (and gives the connection back once
    its call is over); `release` gives back what no attempt claimed."""

    __slots__ = ("_connections", "connection", "token")

    def __init__(self, connections: Slots) -> None:
        self._connections = connections
        self.token = False
        self.connection = False

    def claim(self) -> tuple[bool, bool]:
        claimed = (self.token, self.connection)
        self.token = self.connection = False
        return claimed

    def release(self) -> None:
        if self.connection:
            self._connections.give_back()
        self.token = self.connection = False


class AioConnectGateway:
    """`ConnectGateway` over an aiobotocore Connect client (passed in, not created here)."""

    def __init__(
        self,
        client: ConnectClient,
        budget: Budget,
        *,
        metrics: Metrics,
        policies: GatewayPolicies | None = None,
        clock: Clock | None = None,
        capacity: CapacityGate | None = None,
        outage: OutageHold | None = None,
    ) -> None:
        self._client = client
        #: Where calls wait while Connect does not answer (`outage.py`); None: they fail.
        self._outage = outage
        self._budget = budget
        #: The instance's concurrent-call cap as this worker sees it (the worker reads it too).
        self.capacity = capacity or CapacityGate(clock=clock)
        self._policies = policies or GatewayPolicies()
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self._window = self._policies.consistency_window_s
        #: (priority, arrival) of the starts waiting for a token here: who is ahead of whom.
        self._start_waiters: set[tuple[float, int]] = set()
        self._arrivals = itertools.count()
        #: The client's connections, taken by priority: a call waits here (a few hundred bytes)
        #: rather than in the HTTP pool's own first-come queue with its request built.
        # (botocore's Config sets its options as attributes: untyped; 10 is its default.)
        pool = getattr(client.meta.config, "max_pool_connections", None) or 10
        self._connections = Slots(pool)

    def _quiet(self) -> bool:
        return self._outage is not None and self._outage.declared

    def _fresh(self, since: float | None) -> bool:
        return since is not None and self._clock.monotonic() - since < self._window

    @traced_attempt
    async def _attempt(
        self,
        operation: Operation,
        call: Callable[[], Awaitable[T]],
        *,
        priority: Priority | float,
        fresh_since: float | None = None,
        on_waiting: OnWaiting | None = None,
        interrupt: anyio.Event | None = None,
        prepaid: _Prepaid | None = None,
    ) -> T:
        bucket = self._budget[operation]

        async def acquire() -> None:
            if on_waiting is None:
                await bucket.acquire(priority)
            else:
                await self._acquire_telling(bucket, priority, on_waiting)

        token, connection = (False, False) if prepaid is None else prepaid.claim()
        if not token and not await _unless(interrupt, acquire):
            raise StartWithdrawn("withdrawn while waiting for the start budget")
        turn = -math.inf if operation in _AHEAD_OF_POLLS else priority
        try:
            if connection:
                try:
                    result = await call()
                finally:
                    self._connections.give_back()
            else:
                async with self._connections.held(turn):
                    result = await call()
        except (ClientError, *TRANSPORT_ERRORS) as e:
            error = classify(operation, e, fresh=self._fresh(fresh_since))
            if isinstance(error, ThrottledError):
                bucket.on_throttle()
            outcome = (
                "throttled"
                if isinstance(error, ThrottledError)
                else "capacity"
                if isinstance(error, CapacityError)
                else "error"
            )
            self._metrics.connect_calls.labels(operation, outcome).inc()
            raise error from e
        self._metrics.connect_calls.labels(operation, "ok").inc()
        return result

    async def _acquire_telling(
        self, bucket: Bucket, priority: Priority | float, on_waiting: OnWaiting
    ) -> None:
        """A start's token; if it is not there within `WAITING_NOTICE_S`, `on_waiting` hears
        when it may come: the starts ahead of it here (by priority) at the bucket's rate."""
        rank = priority.value if isinstance(priority, Priority) else priority
        me = (rank, next(self._arrivals))
        self._start_waiters.add(me)
        failure: Exception | None = None

        async def notice() -> None:
            nonlocal failure
            await self._clock.sleep(WAITING_NOTICE_S)
            ahead = sum(1 for other in self._start_waiters if other < me)
            with anyio.CancelScope(shield=True):  # a started event is finished, token or not
                try:
                    await on_waiting("start_rate", round((ahead + 1) / bucket.target_rate, 1))
                except Exception as error:  # raised below, outside the task group
                    failure = error

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(notice)
                await bucket.acquire(priority)
                tg.cancel_scope.cancel()
        finally:
            self._start_waiters.discard(me)
        if failure is not None:
            raise failure

    async def start_webrtc_contact(
        self,
        params: Mapping[str, Any],
        *,
        request_id: str,
        priority: float = 0.0,
        not_after: float | None = None,
        on_waiting: OnWaiting | None = None,
        withdrawal: Withdrawal | None = None,
    ) -> StartedContact:
        """Start (or, with the same `ClientToken`, find) the contact.

        Waits at the `CapacityGate` while the instance is at its concurrent-call cap (one probe
        at a time, oldest `priority` first), for at most `capacity_max_wait_s`. With `not_after`
        (epoch seconds), raises `StartExpired` instead of sending an attempt past it; with
        `withdrawal`, raises `StartWithdrawn` once it is withdrawn, asked before each attempt
        and ending any wait for the budget or the gate. Neither applies once an earlier attempt
        may have created the contact (a transport error or a 5xx): the request then goes on,
        and resumes that contact. While Connect does not answer, the call waits at the outage
        hold and tries again (with the same `ClientToken`).
        """
        return await through_outage(
            self._outage,
            # A held call failed without an answer: it may have created the contact.
            lambda held: self._start(
                params,
                request_id=request_id,
                priority=priority,
                not_after=None if held else not_after,
                on_waiting=on_waiting,
                withdrawal=None if held else withdrawal,
            ),
        )

    async def _start(
        self,
        params: Mapping[str, Any],
        *,
        request_id: str,
        priority: float,
        not_after: float | None,
        on_waiting: OnWaiting | None,
        withdrawal: Withdrawal | None,
    ) -> StartedContact:
        sent = False

        def interrupt() -> anyio.Event | None:
            return None if withdrawal is None or sent else withdrawal.requested

        async def call() -> StartedContact:
            nonlocal sent
            if not sent and withdrawal is not None and await withdrawal.withdrawn():
                raise StartWithdrawn("withdrawn before the start")
            if not_after is not None and not sent and self._clock.time() > not_after:
                raise StartExpired(f"not started by {not_after:.3f}")
            try:
                response = await self._attempt(
                    START,
                    lambda: self._client.start_web_rtc_contact(**params),
                    priority=priority,
                    on_waiting=on_waiting,
                    interrupt=interrupt(),
                )
            except RetryableConnectError as error:
                sent = sent or not isinstance(error, ThrottledError)
                raise
            return StartedContact(
                contact_id=response["ContactId"],
                participant_id=response.get("ParticipantId", ""),
                participant_token=response.get("ParticipantToken", ""),
                connection_data=dict(response.get("ConnectionData") or {}),
            )

        gate = self.capacity
        refused: CapacityError | None = None
        with anyio.move_on_after(self._policies.capacity_max_wait_s) as waited:
            while True:
                limit = None if not_after is None or sent else not_after - self._clock.time()
                if gate.blocked and on_waiting is not None:
                    await on_waiting("capacity", None)
                with anyio.move_on_after(limit) as admission:
                    admitted = await _unless(interrupt(), lambda: gate.admit(priority))
                if admission.cancelled_caught:
                    raise StartExpired(f"not started by {not_after}: waiting for capacity")
                if not admitted:
                    raise StartWithdrawn("withdrawn while waiting for capacity")
                try:
                    started = await self._policies.start.call(
                        call,
                        clock=self._clock,
                        context={"request_id": request_id},
                        quiet=self._quiet,
                    )
                except CapacityError as error:
                    refused = error
                    gate.refused()
                    continue
                except BaseException:
                    gate.released()
                    raise
                gate.succeeded()
                return started
        assert waited.cancel_called  # noqa: S101 (the loop only ends by returning or timing out)
        raise refused or CapacityError(START, "LimitExceededException", "capacity wait over")

    async def describe_contact(
        self,
        instance_id: str,
        contact_id: str,
        *,
        fresh_since: float | None,
        priority: Priority | float,
    ) -> ContactSnapshot:
        # The first attempt's token and connection are taken here, before the call is set up:
        # at scale nearly every watched contact has a poll waiting for them, and what a waiting
        # poll holds is then a queue entry, not the retry policy, its attempt and the call's
        # span (about 3 KiB). Later attempts take theirs as usual.
        prepaid = _Prepaid(self._connections)
        await self._budget[DESCRIBE].acquire(priority)
        prepaid.token = True
        try:
            await self._connections.take(priority)
            prepaid.connection = True

            async def call() -> ContactSnapshot:
                response = await self._attempt(
                    DESCRIBE,
                    lambda: self._client.describe_contact(
                        InstanceId=instance_id, ContactId=contact_id
                    ),
                    priority=priority,
                    fresh_since=fresh_since,
                    prepaid=prepaid,
                )
                return ContactSnapshot.from_api(response["Contact"])

            return await through_outage(
                self._outage,
                lambda _: self._policies.describe.call(
                    call, clock=self._clock, context={"contact_id": contact_id}, quiet=self._quiet
                ),
            )
        finally:
            prepaid.release()

    async def start_screen_sharing(
        self, instance_id: str, contact_id: str, client_token: str, *, fresh_since: float | None
    ) -> None:
        async def call() -> None:
            await self._attempt(
                SCREEN_SHARING,
                lambda: self._client.start_screen_sharing(
                    InstanceId=instance_id, ContactId=contact_id, ClientToken=client_token
                ),
                priority=0.0,
                fresh_since=fresh_since,
            )

        await through_outage(
            self._outage,
            lambda _: self._policies.screen_sharing.call(
                call, clock=self._clock, context={"contact_id": contact_id}, quiet=self._quiet
            ),
        )

    async def get_contact_metrics(
        self, instance_id: str, contact_id: str, *, priority: float = 0.0
    ) -> ContactMetrics | None:
        try:
            response = await self._attempt(
                METRICS,
                lambda: self._client.get_contact_metrics(
                    InstanceId=instance_id,
                    ContactId=contact_id,
                    Metrics=[{"Name": "POSITION_IN_QUEUE"}, {"Name": "ESTIMATED_WAIT_TIME"}],
                ),
                priority=priority,
            )
        except DeploymentError as error:
            raise FeatureUnavailable(error.operation, error.code, error.message) from error
        except TerminalConnectError as error:
            if error.code in _NOT_IN_QUEUE:
                return None
            if error.code in _UNAVAILABLE:
                raise FeatureUnavailable(error.operation, error.code, error.message) from error
            raise
        return ContactMetrics.from_api(response)

    async def stop_contact(
        self,
        instance_id: str,
        contact_id: str,
        *,
        priority: Priority | float = 0.0,
        confirm: Callable[[], Awaitable[bool]] | None = None,
    ) -> bool:
        # An attempt whose answer was lost (a transport error, a 5xx) may have stopped the
        # contact: a 410 after it means "stopped", not "ended before".
        sent = False

        async def call() -> bool:
            nonlocal sent
            # The token first, then the confirmation (holding no connection), then the call.
            await self._budget[STOP].acquire(priority)
            if confirm is not None and not await confirm():
                return False
            prepaid = _Prepaid(self._connections)
            prepaid.token = True
            try:
                await self._attempt(
                    STOP,
                    lambda: self._client.stop_contact(InstanceId=instance_id, ContactId=contact_id),
                    priority=priority,
                    prepaid=prepaid,
                )
            except TerminalConnectError as error:
                if error.code == CONTACT_NOT_FOUND:
                    return sent
                raise
            except RetryableConnectError as error:
                sent = sent or not isinstance(error, ThrottledError)
                raise
            return True

        return await self._policies.stop.call(
            call, clock=self._clock, context={"contact_id": contact_id}
        )
