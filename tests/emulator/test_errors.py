"""Every error class the emulator answers with: code, HTTP status and message, in both SDKs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError

from orchestrator.testing.emulator import Quota
from tests.conftest import FLOW_ID, INSTANCE_ID
from tests.emulator._helpers import (
    SCREEN_SHARE_BOTH,
    ControlApi,
    SyncControlApi,
    answer_of,
    start_args,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from types_aiobotocore_connect import ConnectClient

    from orchestrator.testing.emulator import Emulator
    from tests.emulator._helpers import (
        Boto3Factory,
        ClientFactory,
        ThreadStarter,
    )

OTHER_INSTANCE = "99999999-0000-0000-0000-000000000000"


def _budget_attributes() -> dict[str, str]:
    # 16,400 two-byte characters: within the per-value length limit, over the byte budget.
    return {"note": "é" * 16_400}


#: (case, StartWebRTCContact arguments, text the message must contain: the member and the rule)
INVALID_STARTS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    (
        "missing ParticipantDetails",
        {"InstanceId": INSTANCE_ID, "ContactFlowId": FLOW_ID},
        ("'ParticipantDetails'", "must not be null"),
    ),
    (
        "missing DisplayName",
        start_args(ParticipantDetails={}),
        ("'ParticipantDetails.DisplayName'", "must not be null"),
    ),
    (
        "empty DisplayName",
        start_args(ParticipantDetails={"DisplayName": ""}),
        ("'ParticipantDetails.DisplayName'", "greater than or equal to 1"),
    ),
    (
        "DisplayName too long",
        start_args(ParticipantDetails={"DisplayName": "x" * 257}),
        ("'ParticipantDetails.DisplayName'", "less than or equal to 256"),
    ),
    (
        "unknown capability value",
        start_args(AllowedCapabilities={"Customer": {"ScreenShare": "RECEIVE"}}),
        ("'AllowedCapabilities.Customer.ScreenShare'", "[SEND]"),
    ),
    (
        "attributes over 32,768 UTF-8 bytes",
        start_args(Attributes=_budget_attributes()),
        ("'Attributes'", "32768 UTF-8 bytes"),
    ),
    (
        "attribute key with a space",
        start_args(Attributes={"bad key": "v"}),
        ("Attributes['bad key'] key", "alphanumeric"),
    ),
    (
        "attribute key with a trailing newline",
        start_args(Attributes={"order\n": "v"}),
        ("Attributes['order\\n'] key", "alphanumeric"),
    ),
    (
        "references over 4,096 UTF-8 bytes",
        start_args(
            References={
                "first": {"Value": "a" * 3000, "Type": "URL"},
                "second": {"Value": "b" * 1100, "Type": "URL"},
            }
        ),
        ("'References'", "4096 UTF-8 bytes"),
    ),
    (
        "InstanceId too long",
        start_args(InstanceId="i" * 101),
        ("'InstanceId'", "less than or equal to 100"),
    ),
]

#: Requests right at the documented limits: all accepted.
AT_THE_LIMITS: list[tuple[str, dict[str, Any]]] = [
    ("DisplayName of 256", start_args(ParticipantDetails={"DisplayName": "x" * 256})),
    ("attributes of exactly 32,768 bytes", start_args(Attributes={"a": "x" * 32_767})),
    (
        "references of exactly 4,096 bytes",
        start_args(References={"doc": {"Value": "x" * 4_093, "Type": "URL"}}),
    ),
    ("InstanceId of 100", start_args(InstanceId="i" * 100)),
    ("attribute keys with - and _", start_args(Attributes={"order-id_2": "v"})),
]


def _ids(cases: list[Any]) -> list[str]:
    return [case[0] for case in cases]


# -- InvalidParameterException --------------------------------------------------------------


@pytest.mark.parametrize(("case", "args", "expected"), INVALID_STARTS, ids=_ids(INVALID_STARTS))
async def test_invalid_start_is_invalid_parameter_naming_the_member(
    emulator: Emulator,
    client_for: ClientFactory,
    case: str,
    args: dict[str, Any],
    expected: tuple[str, ...],
) -> None:
    # botocore's own checks are off so that the emulator is the one judging the request.
    client = await client_for(emulator, parameter_validation=False)

    with pytest.raises(client.exceptions.InvalidParameterException) as raised:
        await client.start_web_rtc_contact(**args)

    answer = answer_of(raised.value)
    assert (answer.code, answer.status) == ("InvalidParameterException", 400)
    for text in expected:
        assert text in answer.message


@pytest.mark.parametrize(("case", "args"), AT_THE_LIMITS, ids=_ids(AT_THE_LIMITS))
async def test_request_at_the_documented_limit_is_accepted(
    connect_client: ConnectClient, case: str, args: dict[str, Any]
) -> None:
    started = await connect_client.start_web_rtc_contact(**args)

    assert started["ContactId"]


async def test_describe_contact_with_too_long_instance_id_is_invalid_parameter(
    connect_client: ConnectClient,
) -> None:
    with pytest.raises(connect_client.exceptions.InvalidParameterException) as raised:
        await connect_client.describe_contact(InstanceId="i" * 101, ContactId="c-1")

    assert "'InstanceId'" in answer_of(raised.value).message


async def test_screen_sharing_with_too_long_contact_id_is_invalid_parameter(
    connect_client: ConnectClient,
) -> None:
    with pytest.raises(connect_client.exceptions.InvalidParameterException) as raised:
        await connect_client.start_screen_sharing(InstanceId=INSTANCE_ID, ContactId="c" * 257)

    assert "'ContactId'" in answer_of(raised.value).message


async def test_invalid_request_creates_no_contact(
    emulator: Emulator, connect_client: ConnectClient, control: ControlApi
) -> None:
    with pytest.raises(connect_client.exceptions.InvalidParameterException):
        await connect_client.start_web_rtc_contact(
            **start_args(ParticipantDetails={"DisplayName": "x" * 300})
        )

    assert await control.contacts() == []
    assert (await control.op_stats("StartWebRTCContact"))["client_errors"] == 1


# -- ResourceNotFoundException --------------------------------------------------------------


async def test_unknown_instance_is_not_found_when_instances_are_configured(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(instance_ids=frozenset({INSTANCE_ID}))
    client = await client_for(emulator)

    with pytest.raises(client.exceptions.ResourceNotFoundException) as on_start:
        await client.start_web_rtc_contact(**start_args(InstanceId=OTHER_INSTANCE))
    with pytest.raises(client.exceptions.ResourceNotFoundException) as on_describe:
        await client.describe_contact(InstanceId=OTHER_INSTANCE, ContactId="c-1")
    with pytest.raises(client.exceptions.ResourceNotFoundException) as on_share:
        await client.start_screen_sharing(InstanceId=OTHER_INSTANCE, ContactId="c-1")
    started = await client.start_web_rtc_contact(**start_args(InstanceId=INSTANCE_ID))

    for raised in (on_start, on_describe, on_share):
        answer = answer_of(raised.value)
        assert answer.status == 404
        assert f"Instance not found: {OTHER_INSTANCE}" in answer.message
    assert started["ContactId"]


async def test_unknown_contact_flow_is_not_found_when_flows_are_configured(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(contact_flow_ids=frozenset({FLOW_ID}))
    client = await client_for(emulator)

    with pytest.raises(client.exceptions.ResourceNotFoundException) as raised:
        await client.start_web_rtc_contact(**start_args(ContactFlowId="unknown-flow"))
    started = await client.start_web_rtc_contact(**start_args(ContactFlowId=FLOW_ID))

    answer = answer_of(raised.value)
    assert answer.status == 404
    assert "Contact flow not found: unknown-flow" in answer.message
    assert started["ContactId"]


async def test_unknown_contact_is_not_found(connect_client: ConnectClient) -> None:
    with pytest.raises(connect_client.exceptions.ResourceNotFoundException) as on_describe:
        await connect_client.describe_contact(InstanceId=INSTANCE_ID, ContactId="no-such-contact")
    with pytest.raises(connect_client.exceptions.ResourceNotFoundException) as on_share:
        await connect_client.start_screen_sharing(
            InstanceId=INSTANCE_ID, ContactId="no-such-contact"
        )

    for raised in (on_describe, on_share):
        answer = answer_of(raised.value)
        assert (answer.code, answer.status) == ("ResourceNotFoundException", 404)
        assert "Contact not found: no-such-contact" in answer.message


async def test_contact_is_not_found_under_another_instance(connect_client: ConnectClient) -> None:
    started = await connect_client.start_web_rtc_contact(**start_args())

    with pytest.raises(connect_client.exceptions.ResourceNotFoundException):
        await connect_client.describe_contact(
            InstanceId=OTHER_INSTANCE, ContactId=started["ContactId"]
        )


# -- AccessDenied, throttling, InvalidRequest, InternalService ------------------------------


async def test_throttled_describe_and_screen_sharing_are_throttling_exception(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    one_call = Quota(rate=0.01, burst=1.0)
    emulator = await start_emulator(
        quotas={"DescribeContact": one_call, "StartScreenSharing": one_call}
    )
    client = await client_for(emulator)
    started = await client.start_web_rtc_contact(**start_args())
    contact = {"InstanceId": INSTANCE_ID, "ContactId": started["ContactId"]}
    await client.describe_contact(**contact)
    with pytest.raises(client.exceptions.InvalidRequestException):
        await client.start_screen_sharing(**contact)  # not connected yet; spends the one token

    with pytest.raises(client.exceptions.ThrottlingException) as on_describe:
        await client.describe_contact(**contact)
    with pytest.raises(client.exceptions.ThrottlingException) as on_share:
        await client.start_screen_sharing(**contact)

    for raised in (on_describe, on_share):
        answer = answer_of(raised.value)
        assert (answer.code, answer.status) == ("ThrottlingException", 429)
        assert answer.message == "Rate exceeded"


async def test_start_over_its_rate_is_too_many_requests_exception(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(quotas={"StartWebRTCContact": Quota(rate=0.01, burst=1.0)})
    client = await client_for(emulator)
    await client.start_web_rtc_contact(**start_args())

    with pytest.raises(client.exceptions.TooManyRequestsException) as raised:
        await client.start_web_rtc_contact(**start_args())

    answer = answer_of(raised.value)
    assert (answer.code, answer.status) == ("TooManyRequestsException", 429)
    assert answer.message == "Rate exceeded"
    assert "concurren" not in answer.message.lower()


async def test_start_at_the_concurrent_call_cap_is_limit_exceeded_not_too_many_requests(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(
        max_concurrent_calls=1, quotas={"StartWebRTCContact": Quota(rate=0.01, burst=2.0)}
    )
    client = await client_for(emulator)
    await client.start_web_rtc_contact(**start_args())

    with pytest.raises(client.exceptions.LimitExceededException) as capped:
        await client.start_web_rtc_contact(**start_args())
    with pytest.raises(client.exceptions.TooManyRequestsException) as rate_limited:
        await client.start_web_rtc_contact(**start_args())

    cap, rate = answer_of(capped.value), answer_of(rate_limited.value)
    assert (cap.code, cap.status) == ("LimitExceededException", 429)
    assert "concurrent" in cap.message
    assert (rate.code, rate.status) == ("TooManyRequestsException", 429)
    stats = await ControlApi(emulator.url).op_stats("StartWebRTCContact")
    assert (stats["concurrency_limited"], stats["throttled"]) == (1, 1)


async def test_screen_sharing_on_waiting_contact_is_invalid_request(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    client = await client_for(await start_emulator(agent_delay_s=(3600.0, 3600.0)))
    started = await client.start_web_rtc_contact(
        **start_args(AllowedCapabilities=SCREEN_SHARE_BOTH)
    )

    with pytest.raises(client.exceptions.InvalidRequestException) as raised:
        await client.start_screen_sharing(InstanceId=INSTANCE_ID, ContactId=started["ContactId"])

    answer = answer_of(raised.value)
    assert (answer.code, answer.status) == ("InvalidRequestException", 400)
    assert "not connected to an agent yet" in answer.message


async def test_injected_error_is_internal_service_exception(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(error_rate=1.0)
    client = await client_for(emulator)

    with pytest.raises(client.exceptions.InternalServiceException) as on_start:
        await client.start_web_rtc_contact(**start_args())
    with pytest.raises(client.exceptions.InternalServiceException) as on_describe:
        await client.describe_contact(InstanceId=INSTANCE_ID, ContactId="c-1")
    with pytest.raises(client.exceptions.InternalServiceException) as on_share:
        await client.start_screen_sharing(InstanceId=INSTANCE_ID, ContactId="c-1")

    for raised in (on_start, on_describe, on_share):
        answer = answer_of(raised.value)
        assert (answer.code, answer.status) == ("InternalServiceException", 500)
        assert answer.request_id


# -- boto3 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("case", "args", "expected"), INVALID_STARTS, ids=_ids(INVALID_STARTS))
def test_boto3_invalid_start_is_invalid_parameter_naming_the_member(
    start_emulator_thread: ThreadStarter,
    boto3_client_for: Boto3Factory,
    case: str,
    args: dict[str, Any],
    expected: tuple[str, ...],
) -> None:
    client = boto3_client_for(start_emulator_thread(), parameter_validation=False)

    with pytest.raises(client.exceptions.InvalidParameterException) as raised:
        client.start_web_rtc_contact(**args)

    answer = answer_of(raised.value)
    assert (answer.code, answer.status) == ("InvalidParameterException", 400)
    for text in expected:
        assert text in answer.message


def test_boto3_sees_not_found_for_unknown_instance_flow_and_contact(
    start_emulator_thread: ThreadStarter, boto3_client_for: Boto3Factory
) -> None:
    thread = start_emulator_thread(
        instance_ids=frozenset({INSTANCE_ID}), contact_flow_ids=frozenset({FLOW_ID})
    )
    client = boto3_client_for(thread)
    not_found = client.exceptions.ResourceNotFoundException

    with pytest.raises(not_found) as unknown_instance:
        client.start_web_rtc_contact(**start_args(InstanceId=OTHER_INSTANCE))
    with pytest.raises(not_found) as unknown_flow:
        client.start_web_rtc_contact(**start_args(ContactFlowId="unknown-flow"))
    with pytest.raises(not_found) as unknown_contact:
        client.describe_contact(InstanceId=INSTANCE_ID, ContactId="no-such-contact")

    messages = [
        answer_of(raised.value).message
        for raised in (unknown_instance, unknown_flow, unknown_contact)
    ]
    assert all(answer_of(r.value).status == 404 for r in (unknown_instance, unknown_flow))
    assert "Instance not found" in messages[0]
    assert "Contact flow not found" in messages[1]
    assert "Contact not found" in messages[2]


def test_boto3_sees_too_many_requests_throttling_invalid_request_and_internal_error(
    start_emulator_thread: ThreadStarter, boto3_client_for: Boto3Factory
) -> None:
    one_call = Quota(rate=0.01, burst=1.0)
    thread = start_emulator_thread(
        quotas={"StartWebRTCContact": one_call, "DescribeContact": one_call}
    )
    client = boto3_client_for(thread)
    control = SyncControlApi(thread.url)
    started = client.start_web_rtc_contact(**start_args())
    contact = {"InstanceId": INSTANCE_ID, "ContactId": started["ContactId"]}
    client.describe_contact(**contact)

    with pytest.raises(client.exceptions.TooManyRequestsException) as start_limited:
        client.start_web_rtc_contact(**start_args())
    with pytest.raises(client.exceptions.ThrottlingException) as describe_throttled:
        client.describe_contact(**contact)
    with pytest.raises(client.exceptions.InvalidRequestException) as invalid_request:
        client.start_screen_sharing(**contact)
    control.patch_config(error_rate=1.0)
    with pytest.raises(client.exceptions.InternalServiceException) as internal:
        client.start_screen_sharing(**contact)

    assert answer_of(start_limited.value).status == 429
    assert answer_of(describe_throttled.value).status == 429
    assert answer_of(invalid_request.value).status == 400
    assert answer_of(internal.value).status == 500


def test_boto3_error_is_a_client_error_with_code_and_request_id(
    start_emulator_thread: ThreadStarter, boto3_client_for: Boto3Factory
) -> None:
    client = boto3_client_for(start_emulator_thread())

    with pytest.raises(ClientError) as raised:
        client.describe_contact(InstanceId=INSTANCE_ID, ContactId="no-such-contact")

    answer = answer_of(raised.value)
    assert (answer.code, answer.status) == ("ResourceNotFoundException", 404)
    assert answer.request_id
