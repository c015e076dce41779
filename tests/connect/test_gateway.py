"""The Connect gateway: every kind of failure classified once, from real answers of the emulator."""

from __future__ import annotations

import contextlib
import random
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import botocore
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError, ParamValidationError

from orchestrator.connect.capacity import CapacityGate
from orchestrator.connect.gateway import (
    DESCRIBE,
    SCREEN_SHARING,
    START,
    STOP,
    AioConnectGateway,
    GatewayPolicies,
    classify,
    connect_client_config,
)
from orchestrator.connect.operations import Operation, Quota
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.errors import (
    CapacityError,
    ConnectError,
    ConnectUnavailable,
    DeploymentError,
    RetryableConnectError,
    TerminalConnectError,
    ThrottledError,
)
from orchestrator.metrics import Metrics
from orchestrator.retry import RetryPolicy
from orchestrator.testing.emulator import Emulator, EmulatorControl
from tests.conftest import INSTANCE_ID, REGION, no_retries
from tests.support.engine import call_request

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient

Starter = Callable[..., Any]
RawClientFactory = Callable[..., Any]


@pytest.fixture
async def raw_client_for() -> AsyncIterator[RawClientFactory]:
    """`await raw_client_for(url, **config)`: a Connect client without retries, any options."""
    async with contextlib.AsyncExitStack() as stack:

        async def create(url: str, **options: Any) -> ConnectClient:
            config = no_retries().merge(AioConfig(**options)) if options else no_retries()
            client: ConnectClient = await stack.enter_async_context(
                get_session().create_client(
                    "connect", region_name=REGION, endpoint_url=url, config=config
                )
            )
            return client

        yield create


def start_args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = call_request("gw-1").start_webrtc_contact_params(str(uuid.uuid4()))
    args.update(overrides)
    return args


async def client_error(call: Any) -> ClientError:
    with pytest.raises(ClientError) as info:
        await call
    return info.value


def assert_class(error: ConnectError, kind: type[ConnectError], code: str) -> None:
    assert type(error) is kind, f"{error!r} is a {type(error).__name__}, not a {kind.__name__}"
    assert error.code == code


async def test_describe_over_its_quota_is_a_throttle(
    start_emulator: Starter, raw_client_for: RawClientFactory
) -> None:
    emulator: Emulator = await start_emulator(quotas={Operation.DESCRIBE_CONTACT: Quota(1.0, 1.0)})
    client = await raw_client_for(emulator.url)
    with contextlib.suppress(ClientError):
        await client.describe_contact(InstanceId=INSTANCE_ID, ContactId="spends-the-token")

    error = await client_error(
        client.describe_contact(InstanceId=INSTANCE_ID, ContactId="throttled")
    )

    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert_class(classify(DESCRIBE, error), ThrottledError, "ThrottlingException")


async def test_start_over_its_rate_is_a_throttle_not_a_capacity_problem(
    start_emulator: Starter, raw_client_for: RawClientFactory
) -> None:
    emulator: Emulator = await start_emulator(
        quotas={Operation.START_WEBRTC_CONTACT: Quota(1.0, 1.0)}
    )
    client = await raw_client_for(emulator.url)
    await client.start_web_rtc_contact(**start_args())

    error = await client_error(client.start_web_rtc_contact(**start_args()))

    assert "concurren" not in error.response["Error"]["Message"]
    assert_class(classify(START, error), ThrottledError, "TooManyRequestsException")


async def test_start_at_the_concurrent_call_cap_is_a_capacity_error(
    start_emulator: Starter, raw_client_for: RawClientFactory
) -> None:
    emulator: Emulator = await start_emulator(max_concurrent_calls=1, quotas_enabled=False)
    client = await raw_client_for(emulator.url)
    await client.start_web_rtc_contact(**start_args())

    error = await client_error(client.start_web_rtc_contact(**start_args()))

    assert "concurrent" in error.response["Error"]["Message"]
    assert_class(classify(START, error), CapacityError, "LimitExceededException")


async def test_internal_service_error_is_retryable(
    start_emulator: Starter, raw_client_for: RawClientFactory
) -> None:
    emulator: Emulator = await start_emulator(error_rate=1.0)
    client = await raw_client_for(emulator.url)

    error = await client_error(client.start_web_rtc_contact(**start_args()))

    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    for operation in (START, DESCRIBE, SCREEN_SHARING):
        # Retryable, and past the retry budget an outage (`outage.py`), not the request's failure.
        assert_class(classify(operation, error), ConnectUnavailable, "InternalServiceException")


async def test_not_found_is_retryable_only_while_the_contact_is_fresh(
    start_emulator: Starter, raw_client_for: RawClientFactory
) -> None:
    emulator: Emulator = await start_emulator()
    client = await raw_client_for(emulator.url)

    error = await client_error(
        client.describe_contact(InstanceId=INSTANCE_ID, ContactId=str(uuid.uuid4()))
    )

    code = "ResourceNotFoundException"
    assert_class(classify(DESCRIBE, error, fresh=True), RetryableConnectError, code)
    assert_class(classify(DESCRIBE, error, fresh=False), TerminalConnectError, code)


async def test_invalid_request_is_retryable_only_while_the_contact_is_fresh(
    start_emulator: Starter, raw_client_for: RawClientFactory
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(60.0, 60.0))
    client = await raw_client_for(emulator.url)
    contact = await client.start_web_rtc_contact(**start_args())

    error = await client_error(
        client.start_screen_sharing(InstanceId=INSTANCE_ID, ContactId=contact["ContactId"])
    )

    code = "InvalidRequestException"
    assert "not connected to an agent" in error.response["Error"]["Message"]
    assert_class(classify(SCREEN_SHARING, error, fresh=True), RetryableConnectError, code)
    assert_class(classify(SCREEN_SHARING, error, fresh=False), TerminalConnectError, code)


async def test_invalid_parameter_is_terminal_even_when_fresh(
    start_emulator: Starter, raw_client_for: RawClientFactory
) -> None:
    emulator: Emulator = await start_emulator()
    client = await raw_client_for(emulator.url, parameter_validation=False)

    error = await client_error(
        client.start_web_rtc_contact(**start_args(ParticipantDetails={"DisplayName": ""}))
    )

    code = "InvalidParameterException"
    assert "ParticipantDetails.DisplayName" in error.response["Error"]["Message"]
    assert_class(classify(START, error, fresh=True), TerminalConnectError, code)


async def test_access_denied_is_the_deployments_fault_not_the_requests(
    start_emulator: Starter, raw_client_for: RawClientFactory
) -> None:
    emulator: Emulator = await start_emulator()
    client = await raw_client_for(emulator.url, signature_version=botocore.UNSIGNED)

    error = await client_error(client.start_web_rtc_contact(**start_args()))

    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert_class(classify(START, error), DeploymentError, "AccessDeniedException")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_error_is_retryable(raw_client_for: RawClientFactory) -> None:
    client = await raw_client_for(f"http://127.0.0.1:{closed_port()}", connect_timeout=1)

    with pytest.raises(botocore.exceptions.EndpointConnectionError) as info:
        await client.describe_contact(InstanceId=INSTANCE_ID, ContactId="c-1")

    assert_class(classify(DESCRIBE, info.value), ConnectUnavailable, "EndpointConnectionError")


def test_client_side_parameter_validation_failure_is_terminal() -> None:
    error = ParamValidationError(report="Invalid length for parameter InstanceId")

    assert_class(classify(START, error), TerminalConnectError, "ParamValidationError")


def test_timeouts_and_os_errors_are_retryable_and_anything_else_terminal() -> None:
    assert_class(classify(DESCRIBE, TimeoutError()), ConnectUnavailable, "TimeoutError")
    assert_class(
        classify(DESCRIBE, ConnectionResetError()), ConnectUnavailable, "ConnectionResetError"
    )
    assert_class(classify(DESCRIBE, KeyError("Contact")), TerminalConnectError, "KeyError")


# -- the gateway over the emulator -------------------------------------------------------------


def quick(name: str, *retry_on: type[BaseException], max_time_s: float = 60.0) -> RetryPolicy:
    return RetryPolicy(
        name,
        retry_on=retry_on or (RetryableConnectError,),
        max_attempts=3,
        max_time_s=max_time_s,
        initial_s=0.01,
        max_backoff_s=0.02,
        rng=random.Random(0),
    )


async def test_throttled_call_slows_the_operations_budget_and_is_counted(
    start_emulator: Starter, raw_client_for: RawClientFactory
) -> None:
    # One token, refilled only after 1,000 s: the gateway's call is throttled however slowly
    # the machine gets to it (at 1/s a loaded machine refilled it and got ResourceNotFound).
    emulator: Emulator = await start_emulator(
        quotas={Operation.DESCRIBE_CONTACT: Quota(0.001, 1.0)}
    )
    client = await raw_client_for(emulator.url)
    budget = RateBudget()
    metrics = Metrics()
    policies = GatewayPolicies(describe=quick("connect.describe", max_time_s=0.2))
    gateway = AioConnectGateway(client, budget, policies=policies, metrics=metrics)
    with contextlib.suppress(ClientError):
        await client.describe_contact(InstanceId=INSTANCE_ID, ContactId="spends-the-token")

    with pytest.raises(ThrottledError):
        await gateway.describe_contact(INSTANCE_ID, "c-1", fresh_since=None, priority=0.0)

    bucket = budget[Operation.DESCRIBE_CONTACT]
    assert bucket.throttles >= 1
    assert bucket.rate < bucket.target_rate
    assert budget[Operation.START_WEBRTC_CONTACT].throttles == 0
    throttled = metrics.value(
        "orchestrator_connect_calls_total", {"operation": DESCRIBE, "result": "throttled"}
    )
    assert throttled == bucket.throttles


async def test_capacity_errors_do_not_slow_the_budget(
    start_emulator: Starter, client_for: Callable[..., Any]
) -> None:
    emulator: Emulator = await start_emulator(max_concurrent_calls=1, quotas_enabled=False)
    client = await client_for(emulator)
    budget = RateBudget()
    start = RetryPolicy("connect.start", retry_on=(RetryableConnectError,))
    metrics = Metrics()
    gateway = AioConnectGateway(
        client,
        budget,
        policies=GatewayPolicies(start=start, capacity_max_wait_s=0.3),
        metrics=metrics,
        capacity=CapacityGate(first_probe_s=0.01, max_probe_s=0.05),
    )
    await gateway.start_webrtc_contact(
        call_request("first").start_webrtc_contact_params("token-first"), request_id="first"
    )

    with pytest.raises(CapacityError):
        await gateway.start_webrtc_contact(
            call_request("second").start_webrtc_contact_params("token-second"), request_id="second"
        )

    assert budget[Operation.START_WEBRTC_CONTACT].throttles == 0
    start_stats = await EmulatorControl(emulator.url).op_stats("StartWebRTCContact")
    limited = start_stats["concurrency_limited"]
    labels = {"operation": "StartWebRTCContact", "result": "capacity"}
    counted = metrics.value("orchestrator_connect_calls_total", labels)
    # Every refusal the gateway saw is counted as a capacity result (the last probe may still
    # have been on its way when the wait ran out: the emulator counts it, the gateway never saw
    # its answer).
    assert 1 <= counted <= limited


async def test_snapshot_reports_connects_timestamps_as_epoch_seconds(
    start_emulator: Starter, client_for: Callable[..., Any]
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(60.0, 60.0))
    client = await client_for(emulator)
    gateway = AioConnectGateway(client, RateBudget(), metrics=Metrics())
    started = await gateway.start_webrtc_contact(
        call_request("snap-1").start_webrtc_contact_params("token-snap"), request_id="snap-1"
    )
    control = EmulatorControl(emulator.url)
    await control.connect_agent(started.contact_id)

    snapshot = await gateway.describe_contact(
        INSTANCE_ID, started.contact_id, fresh_since=None, priority=0.0
    )

    truth = await control.contact(started.contact_id)
    assert snapshot.contact_id == started.contact_id
    assert snapshot.initiated_at == pytest.approx(truth["CreatedAt"], abs=1e-3)
    assert snapshot.agent_connected_at == pytest.approx(truth["ConnectedToAgentAt"], abs=1e-3)
    assert snapshot.agent_id == truth["AgentId"]
    assert snapshot.disconnected_at is None
    assert snapshot.customer_capabilities == {"Video": "SEND", "ScreenShare": "SEND"}
    assert snapshot.agent_capabilities == {"Video": "SEND", "ScreenShare": "SEND"}
    assert "participant_token" not in repr(started)


async def test_stop_contact_stops_once_and_then_reports_the_contact_already_ended(
    start_emulator: Starter, client_for: Callable[..., Any]
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(60.0, 60.0))
    control = EmulatorControl(emulator.url)
    metrics = Metrics()
    policies = GatewayPolicies(stop=quick("connect.stop_contact"))
    gateway = AioConnectGateway(
        await client_for(emulator), RateBudget(), policies=policies, metrics=metrics
    )
    started = await gateway.start_webrtc_contact(
        call_request("stop-1").start_webrtc_contact_params("token-stop"), request_id="stop-1"
    )
    # A 5xx first: refused before it took effect, so the retry is what stops the contact.
    await control.fail_next(STOP, "InternalServiceException")

    assert await gateway.stop_contact(INSTANCE_ID, started.contact_id) is True
    # ContactNotFoundException (410): already ended, a success rather than an error.
    assert await gateway.stop_contact(INSTANCE_ID, started.contact_id) is False

    truth = await control.contact(started.contact_id)
    assert (truth["State"], truth["DisconnectReason"]) == ("DISCONNECTED", "API")
    calls = {
        result: metrics.value(
            "orchestrator_connect_calls_total", {"operation": STOP, "result": result}
        )
        for result in ("ok", "error")
    }
    assert calls == {"ok": 1, "error": 2}


async def test_stop_contact_refused_for_the_deployment_is_a_deployment_error(
    start_emulator: Starter, client_for: Callable[..., Any]
) -> None:
    emulator: Emulator = await start_emulator()
    await EmulatorControl(emulator.url).fail_next(STOP, "AccessDeniedException")
    gateway = AioConnectGateway(await client_for(emulator), RateBudget(), metrics=Metrics())

    with pytest.raises(DeploymentError):
        await gateway.stop_contact(INSTANCE_ID, "c-1")


def test_connect_client_config_switches_botocores_own_retries_off() -> None:
    config: Any = connect_client_config(max_pool_connections=7)

    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert config.max_pool_connections == 7
