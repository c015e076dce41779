"""Shared fixtures: real protocol peers on loopback (the Connect emulator, an SQS server), and
Connect clients configured as the daemon configures them."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.session import get_session

from orchestrator.connect.gateway import connect_client_config
from orchestrator.testing.emulator import Emulator
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.requests import FLOW_ID, INSTANCE_ID, REGION
from tests.support.clock import VirtualClock
from tests.support.peers import (
    ClientFactory,
    EmulatorFactory,
    VirtualEmulatorFactory,
    emulator_config,
    no_retries,
)

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient
    from types_aiobotocore_sqs import SQSClient

#: Re-exported: the emulator tests import these from here.
__all__ = ["FLOW_ID", "INSTANCE_ID", "REGION", "emulator_config", "no_retries"]

ACCESS_KEY = "AKIATESTEXAMPLE00001"
SECRET_KEY = "testsecretkey/EXAMPLE+0000000000000000"


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials through the standard chain; nothing may reach a real AWS account."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for key in list(os.environ):
        if key.startswith(("ORCHESTRATOR_", "OTEL_")):
            monkeypatch.delenv(key)
    # The dev install has the otel extra: a worker or CLI under test would trace and export to a
    # collector that is not there. The tracing tests configure it explicitly (tests/tracing/).
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")


@pytest.fixture
async def start_emulator() -> AsyncIterator[EmulatorFactory]:
    """Start emulators in this test's event loop: `await start_emulator(agent_delay_s=(1, 1))`."""
    running: list[Emulator] = []

    async def start(**overrides: Any) -> Emulator:
        emulator = Emulator(emulator_config(**overrides))
        await emulator.start()
        running.append(emulator)
        return emulator

    yield start
    for emulator in running:
        await emulator.stop()


@pytest.fixture
async def emulator(start_emulator: EmulatorFactory) -> Emulator:
    return await start_emulator()


@pytest.fixture
async def connect_client(emulator: Emulator) -> AsyncIterator[ConnectClient]:
    async with get_session().create_client(
        "connect", region_name=REGION, endpoint_url=emulator.url, config=no_retries()
    ) as client:
        yield client


@pytest.fixture
async def client_for() -> AsyncIterator[ClientFactory]:
    """`await client_for(emulator)`: a Connect client configured as the daemon configures it."""
    async with contextlib.AsyncExitStack() as stack:

        async def create(emulator: Emulator) -> ConnectClient:
            client: ConnectClient = await stack.enter_async_context(
                get_session().create_client(
                    "connect",
                    region_name=REGION,
                    endpoint_url=emulator.url,
                    config=connect_client_config(),
                )
            )
            return client

        yield create


@pytest.fixture
def vclock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def start_virtual_emulator(
    vclock: VirtualClock,
) -> AsyncIterator[VirtualEmulatorFactory]:
    """Start emulators whose time is `vclock` (shared with the engine under test)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Emulator:
            emulator = Emulator(emulator_config(**overrides), clock=vclock.time)
            await stack.enter_async_context(emulator)
            return emulator

        yield start


@pytest.fixture(scope="session")
def sqs_server() -> Iterator[LocalSqsServer]:
    with LocalSqsServer() as server:
        yield server


@pytest.fixture
async def sqs_client(sqs_server: LocalSqsServer) -> AsyncIterator[SQSClient]:
    async with get_session().create_client(
        "sqs", region_name=REGION, endpoint_url=sqs_server.url
    ) as client:
        yield client


@pytest.fixture
async def sqs_queue(sqs_client: SQSClient) -> str:
    """A fresh, empty standard queue for this test."""
    created = await sqs_client.create_queue(QueueName=f"test-{uuid.uuid4().hex[:12]}")
    return created["QueueUrl"]
