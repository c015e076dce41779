"""The `/_emulator/` control API: stats, ground truth, forced transitions, reset, config."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from orchestrator.testing.emulator import OPERATIONS, ControlError, Quota
from tests.conftest import INSTANCE_ID
from tests.emulator._helpers import SCREEN_SHARE_BOTH, ControlApi, answer_of, start_args

if TYPE_CHECKING:
    from collections.abc import Callable

    from types_aiobotocore_connect import ConnectClient

    from orchestrator.testing.emulator import Emulator
    from tests.emulator._helpers import ClientFactory

STAT_NAMES = {
    "calls",
    "successes",
    "throttled",
    "concurrency_limited",
    "faults",
    "dropped",
    "client_errors",
}


async def test_stats_count_each_operation_separately(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    started = await connect_client.start_web_rtc_contact(**start_args())
    await connect_client.describe_contact(InstanceId=INSTANCE_ID, ContactId=started["ContactId"])
    with pytest.raises(connect_client.exceptions.ResourceNotFoundException):
        await connect_client.describe_contact(InstanceId=INSTANCE_ID, ContactId="missing")

    stats = await control.stats()

    assert set(stats["operations"]) == set(OPERATIONS)
    assert all(set(s) == STAT_NAMES for s in stats["operations"].values())
    assert stats["operations"]["StartWebRTCContact"]["calls"] == 1
    assert stats["operations"]["StartWebRTCContact"]["successes"] == 1
    describe = stats["operations"]["DescribeContact"]
    assert (describe["calls"], describe["successes"], describe["client_errors"]) == (2, 1, 1)
    assert stats["operations"]["StartScreenSharing"]["calls"] == 0
    assert stats["contacts"] == 1
    assert stats["contact_events_published"] == 0


async def test_contacts_show_the_client_token_and_redact_secrets(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    started = await connect_client.start_web_rtc_contact(
        **start_args(
            ClientToken="req-1",
            Description="the customer's private note",
            Attributes={"order": "42"},
        )
    )

    response = await control.request("GET", "/_emulator/contacts")
    (truth,) = response.body["Contacts"]

    assert truth["ContactId"] == started["ContactId"]
    assert truth["InstanceId"] == INSTANCE_ID
    assert truth["ClientToken"] == "req-1"
    assert truth["Request"]["Description"] == "***"
    assert truth["Request"]["Attributes"] == {"order": "42"}
    assert truth["Request"]["ParticipantDetails"] == {"DisplayName": "Jane Doe"}
    assert "ClientToken" not in truth["Request"]
    text = json.dumps(response.body)
    assert "private note" not in text
    assert started["ParticipantToken"] not in text
    assert started["ConnectionData"]["Attendee"]["JoinToken"] not in text


async def test_contacts_count_describe_contact_calls(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    contact_id = (await connect_client.start_web_rtc_contact(**start_args()))["ContactId"]
    for _ in range(3):
        await connect_client.describe_contact(InstanceId=INSTANCE_ID, ContactId=contact_id)

    assert (await control.contact(contact_id))["DescribeContactCalls"] == 3


async def test_contacts_record_every_step_of_a_contact_in_order(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    # No agent comes by itself: every step after the start is forced, in order.
    emulator: Emulator = await start_emulator(agent_delay_s=(600.0, 600.0))
    connect_client = await client_for(emulator)
    control = ControlApi(emulator.url)
    contact_id = (
        await connect_client.start_web_rtc_contact(
            **start_args(AllowedCapabilities=SCREEN_SHARE_BOTH)
        )
    )["ContactId"]
    fresh = await control.contact(contact_id)
    await control.connect_agent(contact_id)
    await connect_client.start_screen_sharing(InstanceId=INSTANCE_ID, ContactId=contact_id)
    await control.disconnect(contact_id)

    truth = await control.contact(contact_id)

    assert fresh["ConnectedToAgentAt"] is None
    assert fresh["DisconnectedAt"] is None
    assert fresh["ScreenSharingStartedAt"] is None
    steps = [
        truth[name]
        for name in (
            "CreatedAt",
            "EnqueuedAt",
            "ConnectedToAgentAt",
            "ScreenSharingStartedAt",
            "DisconnectedAt",
        )
    ]
    assert all(isinstance(step, float) for step in steps)
    assert steps == sorted(steps)
    assert truth["State"] == "DISCONNECTED"
    assert truth["AgentId"]


async def test_forced_transitions_report_whether_they_changed_anything(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    contact_id = (await connect_client.start_web_rtc_contact(**start_args()))["ContactId"]

    connected = await control.connect_agent(contact_id)
    connected_again = await control.connect_agent(contact_id)
    ended = await control.disconnect(contact_id)
    ended_again = await control.disconnect(contact_id)
    connect_after_end = await control.connect_agent(contact_id)

    assert connected["changed"] is True
    assert connected["contact"]["State"] == "CONNECTED_TO_AGENT"
    assert connected_again["changed"] is False
    assert ended["changed"] is True
    assert ended["contact"]["DisconnectReason"] == "AGENT_DISCONNECT"
    assert ended_again["changed"] is False
    assert ended_again["contact"]["DisconnectedAt"] == ended["contact"]["DisconnectedAt"]
    assert connect_after_end["changed"] is False
    assert connect_after_end["contact"]["State"] == "DISCONNECTED"


@pytest.mark.parametrize("action", ["connect-agent", "disconnect"])
async def test_forced_transition_of_unknown_contact_is_not_found(
    control: ControlApi, action: str
) -> None:
    response = await control.request("POST", f"/_emulator/contacts/no-such-contact/{action}")

    assert response.status == 404
    assert response.body == {"Message": "Contact not found"}


async def test_the_control_client_raises_what_the_control_api_refuses(control: ControlApi) -> None:
    with pytest.raises(ControlError, match="404"):
        await control.connect_agent("no-such-contact")
    with pytest.raises(ControlError, match="400"):
        await control.patch_config(error_rate=2.0)
    with pytest.raises(LookupError, match="no-such-contact"):
        await control.contact("no-such-contact")


async def test_reset_forgets_contacts_stats_and_spent_quotas(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(
        max_concurrent_calls=1, quotas={"DescribeContact": Quota(rate=0.01, burst=1)}
    )
    client = await client_for(emulator)
    control = ControlApi(emulator.url)
    old = (await client.start_web_rtc_contact(**start_args()))["ContactId"]
    await client.describe_contact(InstanceId=INSTANCE_ID, ContactId=old)
    with pytest.raises(client.exceptions.ThrottlingException):
        await client.describe_contact(InstanceId=INSTANCE_ID, ContactId=old)

    await control.reset()
    stats = await control.stats()
    contacts = await control.contacts()
    with pytest.raises(client.exceptions.ResourceNotFoundException):  # not throttled any more
        await client.describe_contact(InstanceId=INSTANCE_ID, ContactId=old)
    new = await client.start_web_rtc_contact(**start_args())  # the call slot is free again

    assert contacts == []
    assert stats["contacts"] == 0
    assert all(v == 0 for s in stats["operations"].values() for v in s.values())
    assert new["ContactId"] != old


async def test_config_shows_the_current_settings(
    start_emulator: Callable[..., Any],
) -> None:
    emulator: Emulator = await start_emulator(
        instance_ids=frozenset({"b-instance", "a-instance"}), agents=3
    )

    config = await ControlApi(emulator.url).config()

    assert config["instance_ids"] == ["a-instance", "b-instance"]
    assert config["agents"] == 3
    assert config["agent_delay_s"] == [0.05, 0.15]
    assert config["quotas"]["DescribeContact"] == {"rate": 10.0, "burst": 15.0}
    assert config["quotas"]["StartWebRTCContact"] == {"rate": 2.0, "burst": 5.0}
    assert config["quotas"]["StartScreenSharing"] == {"rate": 2.0, "burst": 5.0}
    assert config["max_concurrent_calls"] == 10


async def test_config_patch_applies_to_the_next_request(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    patched = await control.patch_config(error_rate=1.0)
    with pytest.raises(connect_client.exceptions.InternalServiceException) as raised:
        await connect_client.start_web_rtc_contact(**start_args())
    restored = await control.patch_config(error_rate=0.0)
    started = await connect_client.start_web_rtc_contact(**start_args())

    assert patched["error_rate"] == 1.0
    assert answer_of(raised.value).status == 500
    assert restored["error_rate"] == 0.0
    assert started["ContactId"]
    assert (await control.config())["error_rate"] == 0.0


async def test_config_patch_of_instance_ids_restricts_the_instances(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    await control.patch_config(instance_ids=[INSTANCE_ID])

    with pytest.raises(connect_client.exceptions.ResourceNotFoundException):
        await connect_client.start_web_rtc_contact(**start_args(InstanceId="another-instance"))
    started = await connect_client.start_web_rtc_contact(**start_args())

    assert started["ContactId"]


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"no_such_setting": 1}, "unknown setting(s): no_such_setting"),
        ({"error_rate": 2.0}, "error_rate must be between 0 and 1"),
        ({"agent_delay_s": [5, 1]}, "agent_delay_s must satisfy 0 <= MIN <= MAX"),
        ({"agents": 0}, "agents must be at least 1"),
        ({"quotas": {"ListContacts": "1/1"}}, "quota for unknown operation"),
        ({"quotas": {"DescribeContact": "0/1"}}, "rate must be > 0"),
        ({"seed": 3}, "cannot change at runtime"),
        ({"events_jsonl_path": "events.jsonl"}, "cannot change at runtime"),
        ({"instance_ids": "abc"}, "instance_ids must be a list of strings"),
        ({"consistency_delay_s": -1}, "consistency_delay_s must be >= 0"),
    ],
    ids=[
        "unknown key",
        "rate above 1",
        "inverted range",
        "no agents",
        "unknown op",
        "zero",
        "seed",
        "events",
        "ids not a list",
        "negative delay",
    ],
)
async def test_config_patch_with_a_bad_setting_is_rejected_and_changes_nothing(
    control: ControlApi, changes: dict[str, Any], complaint: str
) -> None:
    before = await control.config()

    response = await control.request("POST", "/_emulator/config", json_body=changes)

    assert response.status == 400
    assert complaint in response.body["Message"]
    assert await control.config() == before
