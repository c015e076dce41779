"""Fixtures of the engine tests: Connect clients configured as the daemon configures them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.session import get_session

from orchestrator.connect.gateway import connect_client_config
from orchestrator.testing.emulator import Emulator
from orchestrator.testing.requests import REGION
from tests.support.clock import VirtualClock
from tests.support.peers import ClientFactory, VirtualEmulatorFactory, emulator_config

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient

#: The factory types, importable from here too.
__all__ = ["ClientFactory", "VirtualEmulatorFactory"]


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
