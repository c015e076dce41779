"""The Connect gateway: the only code that calls Amazon Connect.

It spends the shared rate budget before every attempt, classifies every failure once into the
orchestrator's error classes (retryable, throttled, capacity, terminal), retries through named
policies and turns responses into small typed values. The lifecycle never sees botocore.
"""

from __future__ import annotations

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
from orchestrator.connect.ratelimit import Budget
from orchestrator.connect.traced import traced_attempt
from orchestrator.errors import (
    CapacityError,
    ConnectError,
    DeploymentError,
    RetryableConnectError,
    StartExpired,
    TerminalConnectError,
    ThrottledError,
)
from orchestrator.metrics import Metrics
from orchestrator.retry import RetryPolicy
from orchestrator.waiters import Priority

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient

log = structlog.get_logger("orchestrator.connect.gateway")

T = TypeVar("T")

START = Operation.START_WEBRTC_CONTACT
DESCRIBE = Operation.DESCRIBE_CONTACT
SCREEN_SHARING = Operation.START_SCREEN_SHARING

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


class ConnectGateway(Protocol):
    """The three Connect operations, as the lifecycle needs them."""

    async def start_webrtc_contact(
        self,
        params: Mapping[str, Any],
        *,
        request_id: str,
        priority: float = 0.0,
        not_after: float | None = None,
    ) -> StartedContact:
        """Start (or, with the same `ClientToken` in `params`, find) the request's contact;
        `StartExpired` if no attempt could be sent by `not_after` (epoch seconds)."""
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
    if status >= 500 or (fresh and code in _EVENTUALLY_CONSISTENT):
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
        kind = RetryableConnectError if transport else TerminalConnectError
        return kind(operation, type(error).__name__, str(error))
    info = error.response.get("Error", {})
    code = str(info.get("Code") or "Unknown")
    message = str(info.get("Message") or "")
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return _client_error_class(operation, code, message, status, fresh)(operation, code, message)


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
    ) -> None:
        self._client = client
        self._budget = budget
        #: The instance's concurrent-call cap as this worker sees it (the worker reads it too).
        self.capacity = capacity or CapacityGate(clock=clock)
        self._policies = policies or GatewayPolicies()
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self._window = self._policies.consistency_window_s

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
    ) -> T:
        bucket = self._budget[operation]
        await bucket.acquire(priority)
        try:
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

    async def start_webrtc_contact(
        self,
        params: Mapping[str, Any],
        *,
        request_id: str,
        priority: float = 0.0,
        not_after: float | None = None,
    ) -> StartedContact:
        """Start (or, with the same `ClientToken`, find) the contact.

        Waits at the `CapacityGate` while the instance is at its concurrent-call cap (one probe
        at a time, oldest `priority` first), for at most `capacity_max_wait_s`. With `not_after`
        (epoch seconds), raises `StartExpired` instead of sending an attempt past it, unless an
        earlier attempt may have created the contact (a transport error or a 5xx): then the
        request goes on, and resumes that contact.
        """
        sent = False

        async def call() -> StartedContact:
            nonlocal sent
            if not_after is not None and not sent and self._clock.time() > not_after:
                raise StartExpired(f"not started by {not_after:.3f}")
            try:
                response = await self._attempt(
                    START,
                    lambda: self._client.start_web_rtc_contact(**params),
                    priority=priority,
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
                with anyio.move_on_after(limit) as admission:
                    await gate.admit(priority)
                if admission.cancelled_caught:
                    raise StartExpired(f"not started by {not_after}: waiting for capacity")
                try:
                    started = await self._policies.start.call(
                        call, clock=self._clock, context={"request_id": request_id}
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
        async def call() -> ContactSnapshot:
            response = await self._attempt(
                DESCRIBE,
                lambda: self._client.describe_contact(InstanceId=instance_id, ContactId=contact_id),
                priority=priority,
                fresh_since=fresh_since,
            )
            return ContactSnapshot.from_api(response["Contact"])

        return await self._policies.describe.call(
            call, clock=self._clock, context={"contact_id": contact_id}
        )

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

        await self._policies.screen_sharing.call(
            call, clock=self._clock, context={"contact_id": contact_id}
        )
