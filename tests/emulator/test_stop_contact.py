"""StopContact: ends a contact (DisconnectReason API), no agent ever gets it afterwards, a
DISCONNECTED contact event follows, 410 ContactNotFoundException for an ended or unknown
contact, its own quota; and the control API's `hold`, injected errors and ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from botocore.exceptions import ClientError

from tests.conftest import INSTANCE_ID
from tests.emulator._helpers import ControlApi, ManualClock, answer_of, start_args
from tests.support import eventually

if TYPE_CHECKING:
    from collections.abc import Callable

    from types_aiobotocore_connect import ConnectClient

    from tests.emulator._helpers import ClientFactory, EmulatorStarter


async def _stop(client: ConnectClient, contact_id: str, **extra: Any) -> None:
    await client.stop_contact(InstanceId=INSTANCE_ID, ContactId=contact_id, **extra)


async def test_a_stopped_contact_is_over_with_reason_api_and_no_agent_ever_gets_it(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    emulator = await start_clocked_emulator(quotas_enabled=False, agent_delay_s=(5.0, 5.0))
    client, control = await client_for(emulator), ControlApi(emulator.url)
    contact_id = (await client.start_web_rtc_contact(**start_args()))["ContactId"]
    clock.advance(1.0)

    answer = await client.stop_contact(InstanceId=INSTANCE_ID, ContactId=contact_id)
    assert set(answer) == {"ResponseMetadata"}  # 200 with an empty body
    clock.advance(3600.0)  # long past the moment the agent would have answered

    described = (await client.describe_contact(InstanceId=INSTANCE_ID, ContactId=contact_id))[
        "Contact"
    ]
    assert described["DisconnectReason"] == "API"
    assert described["DisconnectTimestamp"].timestamp() == pytest.approx(clock.now - 3600.0)
    assert "AgentInfo" not in described
    truth = await control.contact(contact_id)
    assert truth["State"] == "DISCONNECTED"
    assert truth["ConnectedToAgentAt"] is None
    assert truth["StoppedAt"] == pytest.approx(clock.now - 3600.0)
    assert truth["StoppedWithAgent"] is False
    stats = await control.stats()
    assert (stats["contacts_stopped"], stats["stopped_with_agent"]) == (1, 0)
    assert stats["operations"]["StopContact"]["successes"] == 1


async def test_stopping_an_ended_or_unknown_contact_is_contact_not_found_410(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory
) -> None:
    emulator = await start_clocked_emulator(quotas_enabled=False)
    client = await client_for(emulator)
    contact_id = (await client.start_web_rtc_contact(**start_args()))["ContactId"]
    await _stop(client, contact_id)

    for target in (contact_id, "00000000-0000-4000-8000-000000000000"):
        with pytest.raises(ClientError) as raised:
            await _stop(client, target)
        answer = answer_of(raised.value)
        assert (answer.code, answer.status) == ("ContactNotFoundException", 410)
        assert "not active or does not exist" in answer.message


async def test_a_disconnect_reason_is_refused_outside_outbound_campaigns(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory
) -> None:
    emulator = await start_clocked_emulator(quotas_enabled=False)
    client, control = await client_for(emulator), ControlApi(emulator.url)
    contact_id = (await client.start_web_rtc_contact(**start_args()))["ContactId"]

    with pytest.raises(ClientError) as raised:
        await _stop(client, contact_id, DisconnectReason={"Code": "CUSTOMER_DISCONNECT"})

    assert answer_of(raised.value).code == "InvalidRequestException"
    assert (await control.contact(contact_id))["State"] != "DISCONNECTED"


async def test_stopping_a_contact_an_agent_has_is_recorded_as_ground_truth(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory
) -> None:
    emulator = await start_clocked_emulator(quotas_enabled=False)
    client, control = await client_for(emulator), ControlApi(emulator.url)
    contact_id = (await client.start_web_rtc_contact(**start_args()))["ContactId"]
    await control.connect_agent(contact_id)

    await _stop(client, contact_id)

    assert await control.stopped_with_agent() == [contact_id]
    assert (await control.stats())["stopped_with_agent"] == 1


async def test_stop_contact_has_its_own_quota_of_two_per_second_burst_five(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    emulator = await start_clocked_emulator()
    client = await client_for(emulator)
    codes = []
    for _ in range(6):
        try:
            await _stop(client, "00000000-0000-4000-8000-000000000000")
        except ClientError as error:
            codes.append(answer_of(error).code)
    assert codes == ["ContactNotFoundException"] * 5 + ["ThrottlingException"]
    clock.advance(0.5)  # one token back at 2/s
    with pytest.raises(ClientError) as raised:
        await _stop(client, "00000000-0000-4000-8000-000000000000")
    assert answer_of(raised.value).code == "ContactNotFoundException"


async def test_a_stop_publishes_a_disconnected_contact_event(
    start_emulator: Callable[..., Any], client_for: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    emulator = await start_emulator(events_jsonl_path=str(path), agent_delay_s=(3600.0, 3600.0))
    client = await client_for(emulator)
    contact_id = (await client.start_web_rtc_contact(**start_args()))["ContactId"]
    await _stop(client, contact_id)

    async def types() -> list[str] | None:
        if not await anyio.Path(path).exists():
            return None
        lines = (await anyio.Path(path).read_text()).splitlines()
        found = [
            e["detail"]["eventType"]
            for e in map(json.loads, lines)
            if e["detail"]["contactId"] == contact_id
        ]
        return found if "COMPLETED" in found else None

    found = await eventually(types)
    assert "DISCONNECTED" in found
    assert "CONNECTED_TO_AGENT" not in found


async def test_a_held_contact_waits_in_its_queue_until_it_is_stopped(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    emulator = await start_clocked_emulator(quotas_enabled=False, agent_delay_s=(1.0, 1.0))
    client, control = await client_for(emulator), ControlApi(emulator.url)
    contact_id = (await client.start_web_rtc_contact(**start_args()))["ContactId"]

    assert (await control.hold(contact_id))["changed"] is True
    clock.advance(3600.0)
    truth = await control.contact(contact_id)
    assert (truth["State"], truth["Held"]) == ("QUEUED", True)
    await _stop(client, contact_id)
    assert (await control.contact(contact_id))["DisconnectReason"] == "API"
    assert (await control.hold(contact_id))["changed"] is False


async def test_a_contact_started_with_a_held_client_token_is_held_from_its_start(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    emulator = await start_clocked_emulator(
        quotas_enabled=False,
        agent_delay_s=(0.0, 0.0),
        abandon_rate=1.0,
        held_client_tokens=frozenset({"held-token"}),
    )
    client, control = await client_for(emulator), ControlApi(emulator.url)
    held = await client.start_web_rtc_contact(**start_args(ClientToken="held-token"))
    other = await client.start_web_rtc_contact(**start_args(ClientToken="other-token"))

    clock.advance(3600.0)
    truth = await control.contact(held["ContactId"])
    assert (truth["State"], truth["Held"], truth["ConnectedToAgentAt"]) == ("QUEUED", True, None)
    assert (await control.contact(other["ContactId"]))["State"] == "DISCONNECTED"  # abandoned


async def test_held_contacts_are_skipped_by_the_agents_of_the_contact_center_model(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    emulator = await start_clocked_emulator(
        quotas_enabled=False, agents=1, handle_time_s=(10.0, 10.0), patience_s=(3600.0, 3600.0)
    )
    client, control = await client_for(emulator), ControlApi(emulator.url)
    busy = (await client.start_web_rtc_contact(**start_args()))["ContactId"]
    held = (await client.start_web_rtc_contact(**start_args()))["ContactId"]
    later = (await client.start_web_rtc_contact(**start_args()))["ContactId"]
    clock.advance(0.1)
    await control.hold(held)
    clock.advance(15.0)  # the agent is free again: it takes the contact after the held one

    assert (await control.contact(busy))["ConnectedToAgentAt"] is not None
    assert (await control.contact(held))["ConnectedToAgentAt"] is None
    assert (await control.contact(later))["ConnectedToAgentAt"] is not None


async def test_injected_errors_answer_the_next_calls_of_one_operation_in_turn(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory
) -> None:
    emulator = await start_clocked_emulator(quotas_enabled=False)
    client, control = await client_for(emulator), ControlApi(emulator.url)
    contact_id = (await client.start_web_rtc_contact(**start_args()))["ContactId"]
    await control.fail_next("DescribeContact", "InternalServiceException", times=2)
    await control.fail_next("DescribeContact", "InvalidParameterException")

    answers = []
    for _ in range(4):
        try:
            await client.describe_contact(InstanceId=INSTANCE_ID, ContactId=contact_id)
            answers.append("ok")
        except ClientError as error:
            answers.append(f"{answer_of(error).code} {answer_of(error).status}")

    assert answers == [
        "InternalServiceException 500",
        "InternalServiceException 500",
        "InvalidParameterException 400",
        "ok",
    ]
    # Another operation is untouched.
    await _stop(client, contact_id)
