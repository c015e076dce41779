"""The contact-center model's service order: agents take the oldest waiting contact ("fifo", the
default) or a uniformly random one ("random", skills-based routing seen from one queue).

The emulator runs on a manual clock, so every transition happens at its scheduled time and the
order of connections under a seed is exact.
"""

from __future__ import annotations

import argparse
import itertools
from typing import TYPE_CHECKING, Any

import pytest

from orchestrator.testing.emulator.cli import add_arguments, config_from_args
from orchestrator.testing.emulator.config import EmulatorConfig
from tests.emulator._helpers import ControlApi, ManualClock, start_args

if TYPE_CHECKING:
    from tests.emulator._helpers import ClientFactory, EmulatorStarter

CONTACTS = 12


async def _served_in_order(
    start_clocked_emulator: EmulatorStarter,
    client_for: ClientFactory,
    clock: ManualClock,
    *,
    seed: int = 7,
    **overrides: Any,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Start CONTACTS contacts a second apart on one agent (handle time 1 s), let the queue
    drain, and return the contacts in the order they were started, with their ground truth."""
    settings: dict[str, Any] = {
        "quotas_enabled": False,
        "max_concurrent_calls": None,
        "agents": 1,
        "handle_time_s": (1.0, 1.0),
        "patience_s": (1000.0, 1000.0),
        "seed": seed,
    }
    settings.update(overrides)
    emulator = await start_clocked_emulator(**settings)
    client = await client_for(emulator)
    control = ControlApi(emulator.url)
    ids = []
    for _ in range(CONTACTS):
        ids.append((await client.start_web_rtc_contact(**start_args()))["ContactId"])
        clock.advance(0.01)
    clock.advance(CONTACTS * 2.0)
    return ids, [await control.contact(i) for i in ids]


def _connection_order(ids: list[str], truths: list[dict[str, Any]]) -> list[int]:
    """Indices (in start order) of the contacts that got an agent, by connection time."""
    connected = [(t["ConnectedToAgentAt"], i) for i, t in enumerate(truths) if t["AgentId"]]
    return [i for _, i in sorted(connected)]


async def test_fifo_service_connects_contacts_in_the_order_they_were_queued(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    ids, truths = await _served_in_order(start_clocked_emulator, client_for, clock)

    assert _connection_order(ids, truths) == list(range(CONTACTS))


async def test_random_service_connects_contacts_out_of_queue_order(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    ids, truths = await _served_in_order(
        start_clocked_emulator, client_for, clock, service_order="random"
    )

    order = _connection_order(ids, truths)
    assert sorted(order) == list(range(CONTACTS))  # every contact got the agent, once
    assert order != list(range(CONTACTS))
    assert order[0] == 0  # the first found the agent free: no choice to make


async def test_random_service_order_is_the_same_under_the_same_seed(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    first = _connection_order(
        *await _served_in_order(
            start_clocked_emulator, client_for, clock, service_order="random", seed=11
        )
    )
    again = _connection_order(
        *await _served_in_order(
            start_clocked_emulator, client_for, clock, service_order="random", seed=11
        )
    )
    other = _connection_order(
        *await _served_in_order(
            start_clocked_emulator, client_for, clock, service_order="random", seed=12
        )
    )

    assert first == again
    assert other != first


@pytest.mark.parametrize("service_order", ["fifo", "random"])
async def test_every_contact_gets_an_agent_or_abandons(
    start_clocked_emulator: EmulatorStarter,
    client_for: ClientFactory,
    clock: ManualClock,
    service_order: str,
) -> None:
    # Two agents, calls of 2-4 s, customers who wait 1-8 s: some are served, some hang up.
    ids, truths = await _served_in_order(
        start_clocked_emulator,
        client_for,
        clock,
        service_order=service_order,
        agents=2,
        handle_time_s=(2.0, 4.0),
        patience_s=(1.0, 8.0),
    )

    served = [t for t in truths if t["AgentId"] is not None]
    abandoned = [t for t in truths if t["AgentId"] is None]
    assert len(served) + len(abandoned) == len(ids)
    assert served and abandoned
    for truth in truths:
        assert truth["State"] == "DISCONNECTED"
        assert truth["DisconnectReason"] == "CUSTOMER_DISCONNECT"
    for truth in abandoned:
        assert truth["ConnectedToAgentAt"] is None
        assert truth["DisconnectedAt"] - truth["EnqueuedAt"] <= 8.0 + 1e-6
    # No agent ever takes two calls at once.
    for agent in {t["AgentId"] for t in served}:
        calls = sorted(
            (t["ConnectedToAgentAt"], t["DisconnectedAt"]) for t in served if t["AgentId"] == agent
        )
        for (_, ended), (began, _) in itertools.pairwise(calls):
            assert began >= ended - 1e-6


async def test_service_order_changes_at_run_time_through_the_control_api(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    emulator = await start_clocked_emulator(quotas_enabled=False, agents=1)
    control = ControlApi(emulator.url)

    before = await control.config()
    after = await control.patch_config(service_order="random")
    refused = await control.request(
        "POST", "/_emulator/config", json_body={"service_order": "lifo"}
    )

    assert before["service_order"] == "fifo"
    assert after["service_order"] == "random"
    assert (await control.config())["service_order"] == "random"
    assert refused.status == 400
    assert "service_order" in str(refused.body)


def test_service_order_comes_from_the_command_line_and_defaults_to_fifo() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    assert config_from_args(parser.parse_args([])).service_order == "fifo"
    chosen = config_from_args(parser.parse_args(["--agents", "3", "--service-order", "random"]))
    assert chosen.service_order == "random"
    with pytest.raises(SystemExit):
        parser.parse_args(["--service-order", "lifo"])
    with pytest.raises(ValueError, match="service_order"):
        EmulatorConfig(service_order="lifo")
