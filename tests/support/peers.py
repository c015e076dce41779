"""The test peers' defaults and the types of the fixtures that start them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig

from orchestrator.testing.emulator import Emulator, EmulatorConfig

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient

#: `await start_emulator(agent_delay_s=(1, 1))`: a fresh emulator with `emulator_config` overrides.
EmulatorFactory = Callable[..., Awaitable[Emulator]]
#: `await start_virtual_emulator(...)`: the same, on the test's virtual clock.
VirtualEmulatorFactory = Callable[..., Awaitable[Emulator]]
#: `await client_for(emulator)`: a Connect client configured as the daemon configures it.
ClientFactory = Callable[[Emulator], Awaitable["ConnectClient"]]


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


def no_retries() -> AioConfig:
    """botocore's own retries off: tests see every answer the emulator gives."""
    return AioConfig(retries={"total_max_attempts": 1, "mode": "standard"})
