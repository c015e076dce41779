"""Fixtures of the emulator tests: clients for any emulator, a manual clock, boto3 in a thread."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.config import Config

from orchestrator.testing.emulator import Emulator, EmulatorThread
from tests.conftest import REGION, emulator_config, no_retries
from tests.emulator._helpers import (
    Boto3Factory,
    ClientFactory,
    ControlApi,
    EmulatorStarter,
    ManualClock,
    ThreadStarter,
)

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient


@pytest.fixture
def control(emulator: Emulator) -> ControlApi:
    """The control API of the default `emulator` (the one `connect_client` talks to)."""
    return ControlApi(emulator.url)


@pytest.fixture(scope="session")
def aio_session() -> AioSession:
    """One botocore session for the run, so the Connect service model is loaded only once."""
    return get_session()


@pytest.fixture
async def client_for(aio_session: AioSession) -> AsyncIterator[ClientFactory]:
    """Connect clients for any emulator: `await client_for(emulator, signature_version=...)`.

    Keyword arguments are botocore config options; `access_key` picks another account.
    """
    async with contextlib.AsyncExitStack() as stack:

        async def create(
            emulator: Emulator, *, access_key: str | None = None, **options: Any
        ) -> ConnectClient:
            config = no_retries().merge(AioConfig(**options)) if options else no_retries()
            client: ConnectClient = await stack.enter_async_context(
                aio_session.create_client(
                    "connect",
                    region_name=REGION,
                    endpoint_url=emulator.url,
                    config=config,
                    aws_access_key_id=access_key,
                    aws_secret_access_key=None if access_key is None else "other-secret",
                )
            )
            return client

        yield create


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def start_clocked_emulator(clock: ManualClock) -> AsyncIterator[EmulatorStarter]:
    """Start emulators whose time is `clock`: transitions happen only when the test moves it."""
    running: list[Emulator] = []

    async def start(**overrides: Any) -> Emulator:
        emulator = Emulator(emulator_config(**overrides), clock=clock)
        await emulator.start()
        running.append(emulator)
        return emulator

    yield start
    for emulator in running:
        await emulator.stop()


@pytest.fixture
def start_emulator_thread() -> Iterator[ThreadStarter]:
    """Start emulators on their own thread and loop, for synchronous boto3 tests."""
    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> EmulatorThread:
            return stack.enter_context(EmulatorThread(emulator_config(**overrides)))

        yield start


@pytest.fixture
def boto3_client_for() -> Iterator[Boto3Factory]:
    """boto3 Connect clients without retries: `boto3_client_for(thread, signature_version=...)`."""
    with contextlib.ExitStack() as stack:

        def create(thread: EmulatorThread, **options: Any) -> Any:
            config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, **options)
            client = boto3.client(
                "connect", region_name=REGION, endpoint_url=thread.url, config=config
            )
            stack.callback(client.close)
            return client

        yield create
