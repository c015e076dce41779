"""StartScreenSharing: only on a contact connected to an agent, with ScreenShare=SEND both ways."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import INSTANCE_ID
from tests.emulator._helpers import (
    SCREEN_SHARE_BOTH,
    ControlApi,
    SyncControlApi,
    answer_of,
    start_args,
)
from tests.support import eventually

if TYPE_CHECKING:
    from collections.abc import Callable

    from types_aiobotocore_connect import ConnectClient

    from tests.emulator._helpers import Boto3Factory, ClientFactory, ThreadStarter

#: AllowedCapabilities that do not allow screen sharing.
NOT_SHAREABLE: list[tuple[str, dict[str, Any] | None]] = [
    ("no capabilities", None),
    ("customer only", {"Customer": {"ScreenShare": "SEND"}}),
    ("agent only", {"Agent": {"ScreenShare": "SEND"}}),
    ("video only", {"Customer": {"Video": "SEND"}, "Agent": {"Video": "SEND"}}),
]


async def _start(client: ConnectClient, capabilities: dict[str, Any] | None) -> str:
    extra = {} if capabilities is None else {"AllowedCapabilities": capabilities}
    return (await client.start_web_rtc_contact(**start_args(**extra)))["ContactId"]


async def test_screen_sharing_starts_on_a_connected_contact_with_both_capabilities(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    contact_id = await _start(connect_client, SCREEN_SHARE_BOTH)
    connected = await control.connect_agent(contact_id)

    await connect_client.start_screen_sharing(InstanceId=INSTANCE_ID, ContactId=contact_id)

    truth = await control.contact(contact_id)
    assert truth["ScreenSharingStarts"] == 1
    assert truth["ScreenSharingStartedAt"] >= connected["contact"]["ConnectedToAgentAt"]
    assert (await control.op_stats("StartScreenSharing"))["successes"] == 1


async def test_screen_sharing_is_refused_before_the_agent_connects(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(agent_delay_s=(3600.0, 3600.0))
    client, control = await client_for(emulator), ControlApi(emulator.url)
    contact_id = await _start(client, SCREEN_SHARE_BOTH)

    with pytest.raises(client.exceptions.InvalidRequestException) as raised:
        await client.start_screen_sharing(InstanceId=INSTANCE_ID, ContactId=contact_id)

    answer = answer_of(raised.value)
    assert answer.status == 400
    assert answer.message == f"Contact {contact_id} is not connected to an agent yet."
    assert (await control.contact(contact_id))["ScreenSharingStarts"] == 0
    assert (await control.op_stats("StartScreenSharing"))["client_errors"] == 1


async def test_screen_sharing_is_refused_after_the_contact_ended(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    contact_id = await _start(connect_client, SCREEN_SHARE_BOTH)
    await control.connect_agent(contact_id)
    await control.disconnect(contact_id)

    with pytest.raises(connect_client.exceptions.InvalidRequestException) as raised:
        await connect_client.start_screen_sharing(InstanceId=INSTANCE_ID, ContactId=contact_id)

    assert "has ended" in answer_of(raised.value).message
    assert (await control.contact(contact_id))["ScreenSharingStarts"] == 0


async def test_refused_screen_sharing_does_not_use_up_its_client_token(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    # No agent ever answers on its own: only the control API connects one, so the first call
    # is refused whatever the machine's load.
    emulator = await start_emulator(agent_delay_s=(3600.0, 3600.0))
    client, control = await client_for(emulator), ControlApi(emulator.url)
    contact_id = await _start(client, SCREEN_SHARE_BOTH)
    request = {"InstanceId": INSTANCE_ID, "ContactId": contact_id, "ClientToken": "share-1"}
    with pytest.raises(client.exceptions.InvalidRequestException):
        await client.start_screen_sharing(**request)

    assert (await control.connect_agent(contact_id))["changed"] is True
    await client.start_screen_sharing(**request)

    truth = await control.contact(contact_id)
    assert truth["ScreenSharingStarts"] == 1
    assert truth["ScreenSharingStartedAt"] >= truth["ConnectedToAgentAt"]


@pytest.mark.parametrize(
    ("case", "capabilities"), NOT_SHAREABLE, ids=[case for case, _ in NOT_SHAREABLE]
)
async def test_screen_sharing_is_refused_without_screen_share_send_on_both_sides(
    connect_client: ConnectClient,
    control: ControlApi,
    case: str,
    capabilities: dict[str, Any] | None,
) -> None:
    contact_id = await _start(connect_client, capabilities)
    await control.connect_agent(contact_id)

    with pytest.raises(connect_client.exceptions.InvalidRequestException) as raised:
        await connect_client.start_screen_sharing(InstanceId=INSTANCE_ID, ContactId=contact_id)

    message = answer_of(raised.value).message
    assert "AllowedCapabilities must set ScreenShare=SEND for both Customer and Agent" in message
    assert contact_id in message


async def test_screen_sharing_starts_once_the_agent_answers_on_its_own(
    connect_client: ConnectClient,
) -> None:
    contact_id = await _start(connect_client, SCREEN_SHARE_BOTH)

    async def agent_connected() -> bool:
        described = await connect_client.describe_contact(
            InstanceId=INSTANCE_ID, ContactId=contact_id
        )
        return "ConnectedToAgentTimestamp" in described["Contact"].get("AgentInfo", {})

    await eventually(agent_connected)
    shared = await connect_client.start_screen_sharing(InstanceId=INSTANCE_ID, ContactId=contact_id)

    assert shared["ResponseMetadata"]["HTTPStatusCode"] == 200


# -- boto3 ----------------------------------------------------------------------------------


def test_boto3_screen_sharing_is_refused_until_connected_then_starts(
    start_emulator_thread: ThreadStarter, boto3_client_for: Boto3Factory
) -> None:
    thread = start_emulator_thread(agent_delay_s=(30.0, 30.0))
    client = boto3_client_for(thread)
    control = SyncControlApi(thread.url)
    shareable = client.start_web_rtc_contact(**start_args(AllowedCapabilities=SCREEN_SHARE_BOTH))
    plain = client.start_web_rtc_contact(**start_args())
    shareable_contact = {"InstanceId": INSTANCE_ID, "ContactId": shareable["ContactId"]}

    with pytest.raises(client.exceptions.InvalidRequestException) as waiting:
        client.start_screen_sharing(**shareable_contact)
    control.connect_agent(shareable["ContactId"])
    control.connect_agent(plain["ContactId"])
    client.start_screen_sharing(**shareable_contact)
    with pytest.raises(client.exceptions.InvalidRequestException) as not_allowed:
        client.start_screen_sharing(InstanceId=INSTANCE_ID, ContactId=plain["ContactId"])

    assert "not connected to an agent yet" in answer_of(waiting.value).message
    assert "ScreenShare=SEND" in answer_of(not_allowed.value).message
    assert control.contact(shareable["ContactId"])["ScreenSharingStarts"] == 1
