"""GetContactMetrics through the gateway: answers, "not in queue", and the errors that turn the
feature off, classified once, from real answers (the emulator, or a front end without the
operation)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.session import get_session
from aiohttp import web

from orchestrator.connect.gateway import AioConnectGateway, ContactMetrics, connect_client_config
from orchestrator.connect.operations import DEFAULT_QUOTAS, Operation, Quota
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.errors import FeatureUnavailable, ThrottledError
from orchestrator.metrics import Metrics
from orchestrator.testing.emulator import Emulator, EmulatorControl
from tests.conftest import INSTANCE_ID, REGION
from tests.emulator._helpers import start_args

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient

Starter = Callable[..., Any]
GatewayFactory = Callable[..., Any]
CENTER: dict[str, Any] = {
    "agents": 1,
    "handle_time_s": (600.0, 600.0),
    "patience_s": (600.0, 600.0),
    "flow_delay_s": 0.0,
    "background_contacts": 2,
}


@pytest.fixture
async def gateway_for() -> AsyncIterator[GatewayFactory]:
    """`await gateway_for(url, budget)`: a gateway (and its client) on any Connect endpoint."""
    async with contextlib.AsyncExitStack() as stack:

        async def create(url: str, budget: RateBudget | None = None) -> AioConnectGateway:
            client: ConnectClient = await stack.enter_async_context(
                get_session().create_client(
                    "connect",
                    region_name=REGION,
                    endpoint_url=url,
                    config=connect_client_config(),
                    aws_access_key_id="AKIATEST000000000000",
                    aws_secret_access_key="test-secret",
                )
            )
            return AioConnectGateway(client, budget or RateBudget(), metrics=Metrics())

        yield create


async def _queued_contact(gateway: AioConnectGateway) -> str:
    started = await gateway.start_webrtc_contact(start_args(), request_id="metrics-1")
    return started.contact_id


async def test_a_waiting_contact_gets_its_position_and_estimate(
    start_emulator: Starter, gateway_for: GatewayFactory
) -> None:
    emulator: Emulator = await start_emulator(**CENTER)
    gateway = await gateway_for(emulator.url)
    contact = await _queued_contact(gateway)

    answer = await gateway.get_contact_metrics(INSTANCE_ID, contact)

    # Behind the other application's contact waiting (the agent has its first one).
    assert answer == ContactMetrics(position=2, estimated_wait_s=1200.0)


async def test_a_contact_not_in_queue_is_no_answer_not_an_error(
    start_emulator: Starter, gateway_for: GatewayFactory
) -> None:
    emulator: Emulator = await start_emulator(**CENTER)
    gateway = await gateway_for(emulator.url)
    contact = await _queued_contact(gateway)
    await EmulatorControl(emulator.url).connect_agent(contact)

    assert await gateway.get_contact_metrics(INSTANCE_ID, contact) is None


async def test_access_denied_turns_the_feature_off_not_the_deployment(
    start_emulator: Starter, gateway_for: GatewayFactory
) -> None:
    emulator: Emulator = await start_emulator(**CENTER, metrics_access_denied=True)
    gateway = await gateway_for(emulator.url)
    contact = await _queued_contact(gateway)

    with pytest.raises(FeatureUnavailable) as caught:
        await gateway.get_contact_metrics(INSTANCE_ID, contact)
    assert caught.value.code == "AccessDeniedException"


async def test_an_endpoint_without_the_operation_turns_the_feature_off(
    gateway_for: GatewayFactory,
) -> None:
    # A front end that does not know the operation (an older Connect, a proxy): 404 in AWS's
    # error shape. A test peer at the network boundary.
    async def unknown(request: web.Request) -> web.Response:
        return web.json_response(
            {"Message": f"No operation matches {request.method} {request.path}"},
            status=404,
            headers={"x-amzn-ErrorType": "UnknownOperationException"},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", unknown)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        gateway = await gateway_for(f"http://{host}:{port}")
        with pytest.raises(FeatureUnavailable) as caught:
            await gateway.get_contact_metrics(INSTANCE_ID, "6b1a2c3d-0000-4000-8000-000000000001")
        assert caught.value.code == "UnknownOperationException"
    finally:
        await runner.cleanup()


async def test_over_its_quota_the_answer_is_a_throttle_that_slows_the_bucket(
    start_emulator: Starter, gateway_for: GatewayFactory
) -> None:
    emulator: Emulator = await start_emulator(
        **CENTER, quotas={"GetContactMetrics": Quota(0.01, 1.0)}
    )
    # A budget that believes in more than the emulator allows: the second call is a 429.
    budget = RateBudget({**DEFAULT_QUOTAS, Operation.GET_CONTACT_METRICS: Quota(10.0, 3.0)})
    gateway = await gateway_for(emulator.url, budget)
    contact = await _queued_contact(gateway)
    await gateway.get_contact_metrics(INSTANCE_ID, contact)

    with pytest.raises(ThrottledError):
        await gateway.get_contact_metrics(INSTANCE_ID, contact)
    assert budget[Operation.GET_CONTACT_METRICS].throttles == 1
