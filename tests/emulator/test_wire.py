"""Wire fidelity: botocore parses every answer, request ids, epoch-second timestamps, auth."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import botocore
import pytest
from botocore.exceptions import ClientError

from orchestrator.testing.emulator import Emulator
from tests.conftest import INSTANCE_ID
from tests.emulator._helpers import (
    FAKE_SIGV4,
    SCREEN_SHARE_BOTH,
    ControlApi,
    SyncControlApi,
    answer_of,
    start_args,
)

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient

    from tests.emulator._helpers import Boto3Factory, ClientFactory, ThreadStarter

CONNECT_REQUESTS = [
    ("PUT", "/contact/webrtc", start_args()),
    ("GET", f"/contacts/{INSTANCE_ID}/00000000-0000-4000-8000-000000000001", None),
    ("PUT", "/contact/screen-sharing", {"InstanceId": INSTANCE_ID, "ContactId": "c-1"}),
]


def _is_epoch_seconds(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 1e9


async def test_start_webrtc_contact_answer_parses_with_meeting_and_attendee(
    connect_client: ConnectClient,
) -> None:
    started = await connect_client.start_web_rtc_contact(**start_args())

    assert uuid.UUID(started["ContactId"])
    assert started["ParticipantId"]
    assert started["ParticipantToken"]
    meeting = started["ConnectionData"]["Meeting"]
    assert meeting["MeetingId"]
    assert meeting["MediaRegion"] == "us-east-1"
    assert set(meeting["MediaPlacement"]) == {
        "AudioHostUrl",
        "AudioFallbackUrl",
        "SignalingUrl",
        "TurnControlUrl",
        "EventIngestionUrl",
    }
    attendee = started["ConnectionData"]["Attendee"]
    assert attendee["AttendeeId"]
    assert attendee["JoinToken"]
    assert started["ResponseMetadata"]["HTTPStatusCode"] == 200


async def test_describe_contact_timestamps_parse_to_datetimes(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    started = await connect_client.start_web_rtc_contact(**start_args())
    contact_id = started["ContactId"]
    await control.connect_agent(contact_id)
    await control.disconnect(contact_id)

    described = (
        await connect_client.describe_contact(InstanceId=INSTANCE_ID, ContactId=contact_id)
    )["Contact"]
    truth = await control.contact(contact_id)

    stamps = {
        "InitiationTimestamp": truth["CreatedAt"],
        "ConnectedToSystemTimestamp": truth["CreatedAt"],
        "LastUpdateTimestamp": truth["DisconnectedAt"],
        "DisconnectTimestamp": truth["DisconnectedAt"],
    }
    for name, epoch in stamps.items():
        value = described[name]  # type: ignore[literal-required]
        assert isinstance(value, datetime), name
        assert value.tzinfo is not None, name
        assert value.timestamp() == pytest.approx(epoch, abs=1e-3), name
    assert described["QueueInfo"]["EnqueueTimestamp"].timestamp() == pytest.approx(
        truth["EnqueuedAt"], abs=1e-3
    )
    assert described["AgentInfo"]["ConnectedToAgentTimestamp"].timestamp() == pytest.approx(
        truth["ConnectedToAgentAt"], abs=1e-3
    )


async def test_start_screen_sharing_answer_parses_to_empty_output(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    started = await connect_client.start_web_rtc_contact(
        **start_args(AllowedCapabilities=SCREEN_SHARE_BOTH)
    )
    await control.connect_agent(started["ContactId"])

    shared = await connect_client.start_screen_sharing(
        InstanceId=INSTANCE_ID, ContactId=started["ContactId"]
    )

    assert set(shared) == {"ResponseMetadata"}
    assert shared["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert shared["ResponseMetadata"]["RequestId"]


async def test_every_answer_carries_a_distinct_request_id(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    started = await connect_client.start_web_rtc_contact(
        **start_args(AllowedCapabilities=SCREEN_SHARE_BOTH)
    )
    described = await connect_client.describe_contact(
        InstanceId=INSTANCE_ID, ContactId=started["ContactId"]
    )
    await control.connect_agent(started["ContactId"])
    shared = await connect_client.start_screen_sharing(
        InstanceId=INSTANCE_ID, ContactId=started["ContactId"]
    )
    with pytest.raises(ClientError) as not_found:
        await connect_client.describe_contact(InstanceId=INSTANCE_ID, ContactId="missing")
    with pytest.raises(ClientError) as invalid:
        await connect_client.start_web_rtc_contact(
            **start_args(ParticipantDetails={"DisplayName": "x" * 300})
        )

    request_ids = [
        started["ResponseMetadata"]["RequestId"],
        described["ResponseMetadata"]["RequestId"],
        shared["ResponseMetadata"]["RequestId"],
        answer_of(not_found.value).request_id,
        answer_of(invalid.value).request_id,
    ]
    assert all(request_ids)
    assert len(set(request_ids)) == len(request_ids)


async def test_timestamps_are_epoch_second_numbers_on_the_wire(emulator: Emulator) -> None:
    raw = ControlApi(emulator.url)
    signed = {"Authorization": FAKE_SIGV4}
    started = await raw.request("PUT", "/contact/webrtc", json_body=start_args(), headers=signed)
    assert started.status == 200
    assert started.headers["x-amzn-RequestId"]
    assert started.headers["Content-Type"].startswith("application/json")
    contact_id = started.body["ContactId"]
    await raw.connect_agent(contact_id)
    await raw.disconnect(contact_id)

    described = await raw.request("GET", f"/contacts/{INSTANCE_ID}/{contact_id}", headers=signed)

    assert described.status == 200
    assert described.headers["x-amzn-RequestId"]
    contact = described.body["Contact"]
    for name in (
        "InitiationTimestamp",
        "ConnectedToSystemTimestamp",
        "LastUpdateTimestamp",
        "DisconnectTimestamp",
    ):
        assert _is_epoch_seconds(contact[name]), (name, contact[name])
    assert _is_epoch_seconds(contact["QueueInfo"]["EnqueueTimestamp"])
    assert _is_epoch_seconds(contact["AgentInfo"]["ConnectedToAgentTimestamp"])


async def test_error_answer_has_error_type_header_and_message_body(emulator: Emulator) -> None:
    raw = ControlApi(emulator.url)

    answer = await raw.request(
        "GET", f"/contacts/{INSTANCE_ID}/{uuid.uuid4()}", headers={"Authorization": FAKE_SIGV4}
    )

    assert answer.status == 404
    assert answer.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert answer.headers["x-amzn-RequestId"]
    assert set(answer.body) == {"Message"}
    assert "Contact not found" in answer.body["Message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/contact/webrtc/nothing-here"), ("DELETE", "/contact/webrtc"), ("GET", "/")],
)
async def test_a_route_no_operation_serves_still_answers_in_wire_format(
    emulator: Emulator, method: str, path: str
) -> None:
    answer = await ControlApi(emulator.url).request(
        method, path, headers={"Authorization": FAKE_SIGV4}
    )

    assert answer.status == 404
    assert answer.headers["x-amzn-ErrorType"] == "UnknownOperationException"
    assert answer.headers["x-amzn-RequestId"]
    assert answer.body == {"Message": f"No operation matches {method} {path}"}


@pytest.mark.parametrize(("method", "path", "body"), CONNECT_REQUESTS)
async def test_request_without_authorization_is_access_denied(
    emulator: Emulator, method: str, path: str, body: dict[str, Any] | None
) -> None:
    answer = await ControlApi(emulator.url).request(method, path, json_body=body)

    assert answer.status == 403
    assert answer.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert answer.headers["x-amzn-RequestId"]
    assert "Authorization" in answer.body["Message"]


async def test_non_sigv4_authorization_is_access_denied(emulator: Emulator) -> None:
    answer = await ControlApi(emulator.url).request(
        "PUT", "/contact/webrtc", json_body=start_args(), headers={"Authorization": "Bearer abc"}
    )

    assert answer.status == 403
    assert answer.headers["x-amzn-ErrorType"] == "AccessDeniedException"


async def test_unsigned_botocore_client_is_access_denied(
    emulator: Emulator, client_for: ClientFactory, control: ControlApi
) -> None:
    unsigned = await client_for(emulator, signature_version=botocore.UNSIGNED)

    with pytest.raises(unsigned.exceptions.AccessDeniedException) as denied:
        await unsigned.start_web_rtc_contact(**start_args())

    assert answer_of(denied.value).status == 403
    assert await control.contacts() == []


@pytest.mark.parametrize(
    ("body", "complaint"),
    [(b"{not json", "not valid JSON"), (b'["a list"]', "must be a JSON object")],
)
async def test_body_that_is_not_a_json_object_is_invalid_parameter(
    emulator: Emulator, body: bytes, complaint: str
) -> None:
    answer = await ControlApi(emulator.url).request(
        "PUT",
        "/contact/webrtc",
        data=body,
        headers={"Authorization": FAKE_SIGV4, "Content-Type": "application/json"},
    )

    assert answer.status == 400
    assert answer.headers["x-amzn-ErrorType"] == "InvalidParameterException"
    assert complaint in answer.body["Message"]


# -- boto3 ----------------------------------------------------------------------------------


def test_boto3_parses_all_three_operations(
    start_emulator_thread: ThreadStarter, boto3_client_for: Boto3Factory
) -> None:
    thread = start_emulator_thread()
    client = boto3_client_for(thread)
    control = SyncControlApi(thread.url)

    started = client.start_web_rtc_contact(**start_args(AllowedCapabilities=SCREEN_SHARE_BOTH))
    control.connect_agent(started["ContactId"])
    described = client.describe_contact(InstanceId=INSTANCE_ID, ContactId=started["ContactId"])
    shared = client.start_screen_sharing(InstanceId=INSTANCE_ID, ContactId=started["ContactId"])

    assert started["ConnectionData"]["Meeting"]["MeetingId"]
    assert started["ConnectionData"]["Attendee"]["JoinToken"]
    contact = described["Contact"]
    assert contact["Id"] == started["ContactId"]
    assert isinstance(contact["InitiationTimestamp"], datetime)
    assert isinstance(contact["AgentInfo"]["ConnectedToAgentTimestamp"], datetime)
    assert set(shared) == {"ResponseMetadata"}
    request_ids = {
        answer["ResponseMetadata"]["RequestId"] for answer in (started, described, shared)
    }
    assert len(request_ids) == 3
    assert all(request_ids)


def test_boto3_unsigned_client_is_access_denied(
    start_emulator_thread: ThreadStarter, boto3_client_for: Boto3Factory
) -> None:
    client = boto3_client_for(start_emulator_thread(), signature_version=botocore.UNSIGNED)

    with pytest.raises(client.exceptions.AccessDeniedException) as denied:
        client.describe_contact(InstanceId=INSTANCE_ID, ContactId="c-1")

    answer = answer_of(denied.value)
    assert (answer.code, answer.status) == ("AccessDeniedException", 403)
    assert answer.request_id
