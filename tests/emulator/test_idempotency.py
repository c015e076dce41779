"""ClientToken idempotency of StartWebRTCContact and StartScreenSharing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.conftest import INSTANCE_ID
from tests.emulator._helpers import (
    SCREEN_SHARE_BOTH,
    ControlApi,
    ManualClock,
    SyncControlApi,
    start_args,
)

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient

    from tests.emulator._helpers import (
        Boto3Factory,
        ClientFactory,
        EmulatorStarter,
        ThreadStarter,
    )

SEVEN_DAYS_S = 7 * 24 * 3600.0


async def test_repeated_client_token_returns_same_contact(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    first = await connect_client.start_web_rtc_contact(**start_args(ClientToken="req-1"))
    second = await connect_client.start_web_rtc_contact(**start_args(ClientToken="req-1"))

    assert second["ContactId"] == first["ContactId"]
    assert second["ParticipantId"] == first["ParticipantId"]
    contacts = await control.contacts()
    assert [c["ContactId"] for c in contacts] == [first["ContactId"]]
    assert contacts[0]["ClientToken"] == "req-1"
    assert (await control.op_stats("StartWebRTCContact"))["successes"] == 2


async def test_different_client_tokens_create_different_contacts(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    first = await connect_client.start_web_rtc_contact(**start_args(ClientToken="req-1"))
    second = await connect_client.start_web_rtc_contact(**start_args(ClientToken="req-2"))

    assert second["ContactId"] != first["ContactId"]
    assert len(await control.contacts()) == 2


async def test_start_without_explicit_token_creates_a_contact_per_call(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    # botocore fills in a fresh ClientToken for every call (idempotencyToken in the model).
    first = await connect_client.start_web_rtc_contact(**start_args())
    second = await connect_client.start_web_rtc_contact(**start_args())

    assert first["ContactId"] != second["ContactId"]
    tokens = [c["ClientToken"] for c in await control.contacts()]
    assert len(tokens) == 2
    assert all(tokens)


async def test_client_token_replay_after_disconnect_returns_the_ended_contact(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    first = await connect_client.start_web_rtc_contact(**start_args(ClientToken="req-1"))
    await control.disconnect(first["ContactId"])

    replay = await connect_client.start_web_rtc_contact(**start_args(ClientToken="req-1"))

    assert replay["ContactId"] == first["ContactId"]
    contacts = await control.contacts()
    assert len(contacts) == 1
    assert contacts[0]["State"] == "DISCONNECTED"


async def test_client_token_is_scoped_to_the_instance(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    first = await connect_client.start_web_rtc_contact(**start_args(ClientToken="req-1"))
    other = await connect_client.start_web_rtc_contact(
        **start_args(ClientToken="req-1", InstanceId="another-instance")
    )

    assert other["ContactId"] != first["ContactId"]
    assert len(await control.contacts()) == 2


async def test_client_token_expires_after_seven_days(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    emulator = await start_clocked_emulator(quotas_enabled=False)
    client = await client_for(emulator)
    first = await client.start_web_rtc_contact(**start_args(ClientToken="req-1"))

    clock.advance(SEVEN_DAYS_S - 1)
    within = await client.start_web_rtc_contact(**start_args(ClientToken="req-1"))
    clock.advance(2)
    after = await client.start_web_rtc_contact(**start_args(ClientToken="req-1"))

    assert within["ContactId"] == first["ContactId"]
    assert after["ContactId"] != first["ContactId"]


async def test_repeated_screen_sharing_token_starts_sharing_once(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    started = await connect_client.start_web_rtc_contact(
        **start_args(AllowedCapabilities=SCREEN_SHARE_BOTH)
    )
    contact_id = started["ContactId"]
    await control.connect_agent(contact_id)

    for _ in range(3):
        await connect_client.start_screen_sharing(
            InstanceId=INSTANCE_ID, ContactId=contact_id, ClientToken="share-1"
        )

    truth = await control.contact(contact_id)
    assert truth["ScreenSharingStarts"] == 1
    assert truth["ScreenSharingStartedAt"] is not None
    assert (await control.op_stats("StartScreenSharing"))["successes"] == 3


async def test_screen_sharing_with_new_tokens_counts_each_start(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    started = await connect_client.start_web_rtc_contact(
        **start_args(AllowedCapabilities=SCREEN_SHARE_BOTH)
    )
    contact_id = started["ContactId"]
    await control.connect_agent(contact_id)

    await connect_client.start_screen_sharing(
        InstanceId=INSTANCE_ID, ContactId=contact_id, ClientToken="share-1"
    )
    first_started_at = (await control.contact(contact_id))["ScreenSharingStartedAt"]
    await connect_client.start_screen_sharing(
        InstanceId=INSTANCE_ID, ContactId=contact_id, ClientToken="share-2"
    )

    truth = await control.contact(contact_id)
    assert truth["ScreenSharingStarts"] == 2
    assert truth["ScreenSharingStartedAt"] == first_started_at


async def test_screen_sharing_replay_succeeds_after_contact_disconnected(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    started = await connect_client.start_web_rtc_contact(
        **start_args(AllowedCapabilities=SCREEN_SHARE_BOTH)
    )
    contact = {"InstanceId": INSTANCE_ID, "ContactId": started["ContactId"]}
    await control.connect_agent(started["ContactId"])
    await connect_client.start_screen_sharing(**contact, ClientToken="share-1")
    await control.disconnect(started["ContactId"])

    replay = await connect_client.start_screen_sharing(**contact, ClientToken="share-1")
    with pytest.raises(connect_client.exceptions.InvalidRequestException):
        await connect_client.start_screen_sharing(**contact, ClientToken="share-2")

    assert replay["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert (await control.contact(started["ContactId"]))["ScreenSharingStarts"] == 1


# -- boto3 ----------------------------------------------------------------------------------


def test_boto3_client_token_replays_return_the_same_contact_and_share_once(
    start_emulator_thread: ThreadStarter, boto3_client_for: Boto3Factory
) -> None:
    thread = start_emulator_thread()
    client = boto3_client_for(thread)
    control = SyncControlApi(thread.url)

    first = client.start_web_rtc_contact(
        **start_args(ClientToken="req-1", AllowedCapabilities=SCREEN_SHARE_BOTH)
    )
    second = client.start_web_rtc_contact(
        **start_args(ClientToken="req-1", AllowedCapabilities=SCREEN_SHARE_BOTH)
    )
    contact = {"InstanceId": INSTANCE_ID, "ContactId": first["ContactId"]}
    control.connect_agent(first["ContactId"])
    client.start_screen_sharing(**contact, ClientToken="share-1")
    client.start_screen_sharing(**contact, ClientToken="share-1")
    control.disconnect(first["ContactId"])
    after_end = client.start_web_rtc_contact(
        **start_args(ClientToken="req-1", AllowedCapabilities=SCREEN_SHARE_BOTH)
    )
    client.start_screen_sharing(**contact, ClientToken="share-1")

    assert second["ContactId"] == first["ContactId"]
    assert after_end["ContactId"] == first["ContactId"]
    contacts = control.contacts()
    assert len(contacts) == 1
    assert contacts[0]["ScreenSharingStarts"] == 1
