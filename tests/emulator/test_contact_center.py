"""The emulated contact center: a contact's transitions in the simple and the FIFO queue model.

Most tests run the emulator on a manual clock: the simulation applies every transition at its
scheduled time whenever the server looks, so moving the clock gives exact answers without waiting.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import INSTANCE_ID
from tests.emulator._helpers import ControlApi, ManualClock, start_args
from tests.support import eventually

if TYPE_CHECKING:
    from collections.abc import Callable

    from types_aiobotocore_connect import ConnectClient
    from types_aiobotocore_connect.type_defs import ContactTypeDef

    from orchestrator.testing.emulator import Emulator
    from tests.emulator._helpers import ClientFactory, EmulatorStarter


async def _describe(client: ConnectClient, contact_id: str) -> ContactTypeDef:
    answer = await client.describe_contact(InstanceId=INSTANCE_ID, ContactId=contact_id)
    return answer["Contact"]


async def _start(client: ConnectClient, **overrides: Any) -> str:
    return (await client.start_web_rtc_contact(**start_args(**overrides)))["ContactId"]


async def _clocked(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, **overrides: Any
) -> tuple[ConnectClient, ControlApi]:
    emulator = await start_clocked_emulator(quotas_enabled=False, **overrides)
    return await client_for(emulator), ControlApi(emulator.url)


# -- simple model ---------------------------------------------------------------------------


async def test_contact_goes_initiated_queued_then_connected_after_agent_delay(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    client, control = await _clocked(
        start_clocked_emulator, client_for, flow_delay_s=0.05, agent_delay_s=(0.1, 0.2)
    )
    t0 = clock.now
    contact_id = await _start(client)

    initiated = await _describe(client, contact_id)
    initiated_state = (await control.contact(contact_id))["State"]
    clock.advance(0.05)
    queued = await _describe(client, contact_id)
    queued_state = (await control.contact(contact_id))["State"]
    clock.advance(0.09)  # t0 + 0.14: earlier than the shortest agent delay after the enqueue
    still_queued_state = (await control.contact(contact_id))["State"]
    clock.advance(0.11)  # t0 + 0.25: later than the longest
    connected = await _describe(client, contact_id)
    connected_state = (await control.contact(contact_id))["State"]

    assert initiated_state == "INITIATED"
    assert "QueueInfo" not in initiated
    assert "AgentInfo" not in initiated
    assert initiated["InitiationTimestamp"].timestamp() == pytest.approx(t0)
    assert queued_state == still_queued_state == "QUEUED"
    assert queued["QueueInfo"]["EnqueueTimestamp"].timestamp() == pytest.approx(t0 + 0.05)
    assert "AgentInfo" not in queued
    assert connected_state == "CONNECTED_TO_AGENT"
    waited = (
        connected["AgentInfo"]["ConnectedToAgentTimestamp"]
        - connected["QueueInfo"]["EnqueueTimestamp"]
    ).total_seconds()
    assert 0.1 - 1e-6 <= waited <= 0.2 + 1e-6
    assert "DisconnectTimestamp" not in connected


async def test_customer_who_abandons_disconnects_without_an_agent(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    client, control = await _clocked(
        start_clocked_emulator, client_for, abandon_rate=1.0, agent_delay_s=(0.5, 0.5)
    )
    contact_id = await _start(client)

    clock.advance(0.6)
    contact = await _describe(client, contact_id)

    assert "AgentInfo" not in contact
    assert contact["DisconnectReason"] == "CUSTOMER_DISCONNECT"
    waited = (contact["DisconnectTimestamp"] - contact["QueueInfo"]["EnqueueTimestamp"]).seconds
    assert waited <= 0.5
    assert (await control.contact(contact_id))["State"] == "DISCONNECTED"


async def test_talk_time_ends_a_connected_call(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    client, _ = await _clocked(
        start_clocked_emulator, client_for, agent_delay_s=(0.1, 0.1), talk_time_s=(0.5, 0.5)
    )
    contact_id = await _start(client)

    clock.advance(0.3)
    talking = await _describe(client, contact_id)
    clock.advance(0.5)
    ended = await _describe(client, contact_id)

    assert "DisconnectTimestamp" not in talking
    assert "AgentInfo" in talking
    talked = (
        ended["DisconnectTimestamp"] - ended["AgentInfo"]["ConnectedToAgentTimestamp"]
    ).total_seconds()
    assert talked == pytest.approx(0.5)
    assert ended["DisconnectReason"] == "CUSTOMER_DISCONNECT"
    assert ended["LastUpdateTimestamp"] == ended["DisconnectTimestamp"]


async def test_describe_contact_reports_a_webrtc_voice_contact(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    client, control = await _clocked(start_clocked_emulator, client_for, agent_delay_s=(0.1, 0.1))
    capabilities = {
        "Customer": {"Video": "SEND", "ScreenShare": "SEND"},
        "Agent": {"Video": "SEND", "ScreenShare": "SEND"},
    }
    contact_id = await _start(
        client,
        AllowedCapabilities=capabilities,
        Attributes={"order": "42"},
        Description="private note",
        RelatedContactId="related-1",
    )

    clock.advance(0.2)
    contact = await _describe(client, contact_id)

    truth = await control.contact(contact_id)
    assert contact["Id"] == contact_id
    assert contact["Arn"] == (
        f"arn:aws:connect:us-east-1:123456789012:instance/{INSTANCE_ID}/contact/{contact_id}"
    )
    assert contact["Channel"] == "VOICE"
    assert contact["InitiationMethod"] == "WEBRTC_API"
    assert contact["Customer"]["Capabilities"] == capabilities["Customer"]
    assert contact["AgentInfo"]["Capabilities"] == capabilities["Agent"]
    assert contact["AgentInfo"]["Id"] == truth["AgentId"]
    assert contact["AgentInfo"]["ConnectedToAgentTimestamp"].timestamp() == pytest.approx(
        truth["ConnectedToAgentAt"]
    )
    assert contact["QueueInfo"]["Id"]
    assert contact["QueueInfo"]["EnqueueTimestamp"].timestamp() == pytest.approx(
        truth["EnqueuedAt"]
    )
    assert contact["Attributes"] == {"order": "42"}
    assert contact["Description"] == "private note"
    assert contact["RelatedContactId"] == "related-1"


async def test_contact_without_allowed_capabilities_reports_none(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    contact_id = await _start(connect_client)
    await control.connect_agent(contact_id)

    contact = await _describe(connect_client, contact_id)

    assert contact["Customer"]["Capabilities"] == {}
    assert contact["AgentInfo"]["Capabilities"] == {}


async def test_agent_connects_on_its_own_in_real_time(
    connect_client: ConnectClient, emulator: Emulator
) -> None:
    low, high = emulator.state.config.agent_delay_s
    contact_id = await _start(connect_client)

    async def connected() -> ContactTypeDef | None:
        contact = await _describe(connect_client, contact_id)
        return contact if "AgentInfo" in contact else None

    contact = await eventually(connected)

    waited = (
        contact["AgentInfo"]["ConnectedToAgentTimestamp"] - contact["QueueInfo"]["EnqueueTimestamp"]
    ).total_seconds()
    assert low - 1e-3 <= waited <= high + 1e-3


# -- contact-center (FIFO) model ------------------------------------------------------------


async def test_single_agent_serves_contacts_in_order_one_handle_time_apart(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    client, control = await _clocked(
        start_clocked_emulator,
        client_for,
        agents=1,
        handle_time_s=(0.2, 0.2),
        patience_s=(60.0, 60.0),
    )
    ids = []
    for _ in range(3):
        ids.append(await _start(client))
        clock.advance(0.01)

    states_early = [(await control.contact(i))["State"] for i in ids]
    clock.advance(1.0)
    truths = [await control.contact(i) for i in ids]

    assert states_early == ["CONNECTED_TO_AGENT", "QUEUED", "QUEUED"]
    assert [t["State"] for t in truths] == ["DISCONNECTED"] * 3
    assert len({t["AgentId"] for t in truths}) == 1
    connected = [t["ConnectedToAgentAt"] for t in truths]
    assert connected == sorted(connected)
    for previous, following in itertools.pairwise(truths):
        assert following["ConnectedToAgentAt"] == pytest.approx(previous["DisconnectedAt"])
        assert previous["DisconnectedAt"] - previous["ConnectedToAgentAt"] == pytest.approx(0.2)


async def test_two_agents_take_two_contacts_and_the_third_waits_for_one(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    client, control = await _clocked(
        start_clocked_emulator,
        client_for,
        agents=2,
        handle_time_s=(0.3, 0.3),
        patience_s=(60.0, 60.0),
    )
    t0 = clock.now
    ids = [await _start(client) for _ in range(3)]

    clock.advance(1.0)
    first, second, third = [await control.contact(i) for i in ids]

    assert first["ConnectedToAgentAt"] == pytest.approx(t0)
    assert second["ConnectedToAgentAt"] == pytest.approx(t0)
    assert first["AgentId"] != second["AgentId"]
    assert third["ConnectedToAgentAt"] == pytest.approx(t0 + 0.3)
    assert third["AgentId"] in {first["AgentId"], second["AgentId"]}


async def test_impatient_customer_abandons_while_waiting_in_fifo_queue(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    client, control = await _clocked(
        start_clocked_emulator,
        client_for,
        agents=1,
        handle_time_s=(30.0, 30.0),
        patience_s=(0.1, 0.1),
    )
    busy = await _start(client)
    waiting = await _start(client)

    clock.advance(0.05)
    before = (await control.contact(waiting))["State"]
    clock.advance(0.1)
    contact = await _describe(client, waiting)

    assert before == "QUEUED"
    assert "AgentInfo" not in contact
    assert contact["DisconnectReason"] == "CUSTOMER_DISCONNECT"
    patience = (
        contact["DisconnectTimestamp"] - contact["QueueInfo"]["EnqueueTimestamp"]
    ).total_seconds()
    assert patience == pytest.approx(0.1)
    assert (await control.contact(busy))["State"] == "CONNECTED_TO_AGENT"


async def test_free_agent_skips_abandoned_contact_and_takes_the_next(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    client, control = await _clocked(
        start_clocked_emulator,
        client_for,
        agents=1,
        handle_time_s=(1.0, 1.0),
        patience_s=(60.0, 60.0),
    )
    t0 = clock.now
    busy = await _start(client)
    await control.patch_config(patience_s=[0.1, 0.1])  # patience is drawn when queued
    impatient = await _start(client)
    await control.patch_config(patience_s=[60.0, 60.0])
    patient = await _start(client)

    clock.advance(1.5)

    assert (await control.contact(impatient))["AgentId"] is None
    assert (await control.contact(impatient))["State"] == "DISCONNECTED"
    next_up = await control.contact(patient)
    assert next_up["ConnectedToAgentAt"] == pytest.approx(t0 + 1.0)
    assert next_up["AgentId"] == (await control.contact(busy))["AgentId"]


async def test_forced_disconnect_frees_the_agent_for_the_next_contact(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    client, control = await _clocked(
        start_clocked_emulator,
        client_for,
        agents=1,
        handle_time_s=(60.0, 60.0),
        patience_s=(60.0, 60.0),
    )
    busy = await _start(client)
    waiting = await _start(client)
    clock.advance(0.5)

    await control.disconnect(busy)

    truth = await control.contact(waiting)
    assert truth["State"] == "CONNECTED_TO_AGENT"
    assert truth["ConnectedToAgentAt"] == pytest.approx(clock.now)
    assert (await control.contact(busy))["DisconnectReason"] == "AGENT_DISCONNECT"


async def test_fifo_queue_serves_contacts_in_order_in_real_time(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(agents=1, handle_time_s=(0.1, 0.1), patience_s=(30.0, 30.0))
    client = await client_for(emulator)
    control = ControlApi(emulator.url)
    ids = [await _start(client) for _ in range(3)]

    async def all_done() -> list[dict[str, Any]] | None:
        truths = [await control.contact(i) for i in ids]
        return truths if all(t["State"] == "DISCONNECTED" for t in truths) else None

    truths = await eventually(all_done)

    connected = [t["ConnectedToAgentAt"] for t in truths]
    assert connected == sorted(connected)
    for previous, following in itertools.pairwise(truths):
        assert following["ConnectedToAgentAt"] >= previous["DisconnectedAt"] - 1e-6
        assert following["ConnectedToAgentAt"] - previous["ConnectedToAgentAt"] >= 0.1 - 1e-6


# -- forced transitions ---------------------------------------------------------------------


async def test_forced_connect_replaces_the_scheduled_agent(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    client, control = await _clocked(start_clocked_emulator, client_for, agent_delay_s=(5.0, 5.0))
    contact_id = await _start(client)

    forced = await control.connect_agent(contact_id)
    clock.advance(10.0)
    later = await control.contact(contact_id)

    assert forced["changed"] is True
    assert forced["contact"]["State"] == "CONNECTED_TO_AGENT"
    assert later["AgentId"] == forced["contact"]["AgentId"]
    assert later["ConnectedToAgentAt"] == forced["contact"]["ConnectedToAgentAt"]


async def test_forced_disconnect_of_a_waiting_contact_is_a_customer_disconnect(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    client, control = await _clocked(start_clocked_emulator, client_for, agent_delay_s=(5.0, 5.0))
    contact_id = await _start(client)

    ended = await control.disconnect(contact_id)
    clock.advance(10.0)
    contact = await _describe(client, contact_id)

    assert ended["changed"] is True
    assert ended["contact"]["DisconnectReason"] == "CUSTOMER_DISCONNECT"
    assert "AgentInfo" not in contact
    assert contact["DisconnectTimestamp"].timestamp() == pytest.approx(
        ended["contact"]["DisconnectedAt"]
    )
