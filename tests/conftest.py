"""Shared fixtures: real protocol peers on loopback (the Connect emulator, an SQS server)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from orchestrator.testing.emulator import Emulator, EmulatorConfig
from orchestrator.testing.local_sqs import LocalSqsServer

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient
    from types_aiobotocore_sqs import SQSClient

REGION = "us-east-1"
INSTANCE_ID = "11111111-2222-3333-4444-555555555555"
FLOW_ID = "66666666-7777-8888-9999-000000000000"
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
        if key.startswith("ORCHESTRATOR_"):
            monkeypatch.delenv(key)


def emulator_config(**overrides: Any) -> EmulatorConfig:
    """A fast, deterministic emulator: short waits, no abandons, quotas on."""
    settings: dict[str, Any] = {
        "agent_delay_s": (0.05, 0.15),
        "abandon_rate": 0.0,
        "talk_time_s": (30.0, 30.0),
        "flow_delay_s": 0.0,
        "seed": 7,
    }
    settings.update(overrides)
    return EmulatorConfig(**settings)


EmulatorFactory = Callable[..., Any]


@pytest.fixture
async def start_emulator() -> AsyncIterator[Callable[..., Any]]:
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
async def emulator(start_emulator: Callable[..., Any]) -> Emulator:
    result: Emulator = await start_emulator()
    return result


def no_retries() -> AioConfig:
    """botocore's own retries off: tests see every answer the emulator gives."""
    return AioConfig(retries={"total_max_attempts": 1, "mode": "standard"})


@pytest.fixture
async def connect_client(emulator: Emulator) -> AsyncIterator[ConnectClient]:
    async with get_session().create_client(
        "connect", region_name=REGION, endpoint_url=emulator.url, config=no_retries()
    ) as client:
        yield client


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
