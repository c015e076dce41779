"""Call requests: validation as Connect would apply it, SNS envelopes, defaults, client tokens."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.engine.request import (
    ATTRIBUTES_MAX_BYTES,
    MAX_BODY_BYTES,
    REFERENCES_MAX_BYTES,
    CallRequest,
    CancelRejected,
    CancelRequest,
    RequestDefaults,
    RequestRejected,
    client_token,
    parse_message,
    parse_request,
)
from tests.conftest import FLOW_ID, INSTANCE_ID
from tests.support import request_document as request_body


def rejection(body: str | bytes, defaults: RequestDefaults | None = None) -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        parse_request(body, defaults)
    return info.value


def fields_of(error: RequestRejected) -> dict[str, str]:
    return {e.field: e.message for e in error.errors}


def body(**changes: Any) -> str:
    document = request_body("req-1")
    for key, value in changes.items():
        if value is None:
            document.pop(key, None)
        else:
            document[key] = value
    return json.dumps(document)


def test_valid_request_is_parsed_into_snake_case_fields() -> None:
    request = parse_request(body(Attributes={"plan": "gold"}, ScreenSharing=False))

    assert request.request_id == "req-1"
    assert request.instance_id == INSTANCE_ID
    assert request.participant_details.display_name == "Jane"
    assert request.attributes == {"plan": "gold"}
    assert request.screen_sharing is False


def test_start_parameters_mirror_the_request_without_orchestrator_fields() -> None:
    request = parse_request(body(Description="call me"))

    params = request.start_webrtc_contact_params("tok-1")

    assert params["ClientToken"] == "tok-1"
    assert params["ParticipantDetails"] == {"DisplayName": "Jane"}
    assert params["Description"] == "call me"
    assert "RequestId" not in params
    assert "ScreenSharing" not in params
    assert set(params) == {
        "InstanceId",
        "ContactFlowId",
        "ParticipantDetails",
        "AllowedCapabilities",
        "Description",
        "ClientToken",
    }


def test_body_that_is_not_json_is_rejected() -> None:
    error = rejection("{not json")

    assert list(fields_of(error)) == ["body"]
    assert "not valid JSON" in fields_of(error)["body"]
    assert error.request_id is None


def test_body_that_is_not_an_object_is_rejected_naming_its_type() -> None:
    assert fields_of(rejection("[1, 2]")) == {"body": "must be a JSON object, got list"}


def test_oversize_body_is_rejected_before_parsing() -> None:
    error = rejection(b" " * (MAX_BODY_BYTES + 1))

    assert "over" in fields_of(error)["body"]


def test_body_that_is_not_utf8_is_rejected() -> None:
    assert "not valid UTF-8" in fields_of(rejection(b'{"RequestId": "\xff"}'))["body"]


def test_wrong_types_are_rejected_naming_each_field() -> None:
    error = rejection(body(ParticipantDetails="Jane", ScreenSharing="yes"))

    problems = fields_of(error)
    assert set(problems) == {"ParticipantDetails", "ScreenSharing"}
    assert error.request_id == "req-1"


def test_missing_request_id_and_participant_details_are_named() -> None:
    error = rejection(body(RequestId=None, ParticipantDetails=None))

    assert fields_of(error) == {"RequestId": "required", "ParticipantDetails": "required"}
    assert error.request_id is None


def test_missing_instance_without_default_says_no_default_is_configured() -> None:
    problems = fields_of(rejection(body(InstanceId=None)))

    assert problems == {"InstanceId": "required (and no default is configured)"}


def test_invalid_request_id_is_rejected() -> None:
    problems = fields_of(rejection(body(RequestId="has spaces/and slashes")))

    assert "RequestId" in problems


def test_oversize_display_name_is_rejected() -> None:
    request = parse_request(body(ParticipantDetails={"DisplayName": "x" * 256}))
    assert len(request.participant_details.display_name) == 256

    problems = fields_of(rejection(body(ParticipantDetails={"DisplayName": "x" * 257})))

    assert list(problems) == ["ParticipantDetails.DisplayName"]
    assert "256" in problems["ParticipantDetails.DisplayName"]


def test_attributes_up_to_the_byte_budget_are_accepted_and_one_byte_more_rejected() -> None:
    # One key byte plus 32,767 value bytes is exactly the 32,768-byte budget.
    at_limit = {"a": "x" * (ATTRIBUTES_MAX_BYTES - 1)}
    assert parse_request(body(Attributes=at_limit)).attributes == at_limit

    problems = fields_of(rejection(body(Attributes={"ab": "x" * (ATTRIBUTES_MAX_BYTES - 1)})))

    assert list(problems) == ["Attributes"]
    assert "32769 UTF-8 bytes" in problems["Attributes"]


def test_attribute_budget_counts_utf8_bytes_not_characters() -> None:
    # 16,384 two-byte characters: 32,768 bytes in the value alone, over the budget with the key.
    problems = fields_of(rejection(body(Attributes={"k": "é" * 16_384})))

    assert "Attributes" in problems


def test_attribute_key_with_forbidden_characters_is_rejected() -> None:
    problems = fields_of(rejection(body(Attributes={"bad key!": "v"})))

    assert list(problems) == ["Attributes"]
    assert "'bad key!'" in problems["Attributes"]


def test_references_over_the_byte_budget_are_rejected() -> None:
    references = {
        "first": {"Value": "x" * 2500, "Type": "STRING"},
        "second": {"Value": "y" * 2500, "Type": "STRING"},
    }

    problems = fields_of(rejection(body(References=references)))

    assert list(problems) == ["References"]
    assert f"over the {REFERENCES_MAX_BYTES} limit" in problems["References"]


def test_values_outside_an_enum_are_rejected() -> None:
    error = rejection(
        body(
            References={"r": {"Value": "v", "Type": "PHONE"}},
            AllowedCapabilities={"Customer": {"Video": "RECEIVE"}},
        )
    )

    assert set(fields_of(error)) == {
        "References.r.Type",
        "AllowedCapabilities.Customer.Video",
    }


def test_unknown_fields_are_rejected() -> None:
    assert fields_of(rejection(body(Priority=1))) == {"Priority": "unknown field"}


def test_duplicate_keys_are_rejected() -> None:
    text = body().replace('"RequestId": "req-1"', '"RequestId": "req-1", "RequestId": "req-2"')

    problems = fields_of(rejection(text))

    assert "duplicate key 'RequestId'" in problems["body"]


def test_deeply_nested_json_is_rejected() -> None:
    problems = fields_of(rejection("[" * 100_000 + "]" * 100_000))

    assert problems == {"body": "JSON nested too deeply"}


def test_escaped_lone_surrogate_is_rejected_naming_the_field() -> None:
    text = body().replace('"Jane"', '"Jane \\ud800"')

    problems = fields_of(rejection(text))

    # pydantic refuses it before our UTF-8 check runs; either way the field is named.
    assert list(problems) == ["ParticipantDetails.DisplayName"]
    assert "unicode" in problems["ParticipantDetails.DisplayName"]


def test_raw_lone_surrogate_in_a_text_body_is_rejected() -> None:
    text = body().replace("Jane", "Jane \ud800")

    assert "not valid UTF-8" in fields_of(rejection(text))["body"]


def test_every_problem_is_reported_at_once() -> None:
    error = rejection(body(ParticipantDetails={"DisplayName": ""}, Description="d" * 4097, Foo=1))

    assert set(fields_of(error)) == {"ParticipantDetails.DisplayName", "Description", "Foo"}
    assert str(error).startswith("invalid call request: ")


def sns_envelope(message: Any) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "d0c1",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:calls",
            "Message": message,
            "Timestamp": "2025-01-01T00:00:00.000Z",
        }
    )


def test_sns_envelope_around_a_valid_request_is_unwrapped() -> None:
    request = parse_request(sns_envelope(body()))

    assert request.request_id == "req-1"
    assert request.contact_flow_id == FLOW_ID


def test_sns_envelope_around_garbage_is_rejected() -> None:
    problems = fields_of(rejection(sns_envelope("certainly not json")))

    assert list(problems) == ["Message"]
    assert "not valid JSON" in problems["Message"]


def test_sns_envelope_whose_message_is_not_a_string_is_rejected() -> None:
    problems = fields_of(rejection(sns_envelope({"RequestId": "req-1"})))

    assert problems == {"Message": "SNS Message must be a string"}


def test_defaults_fill_instance_and_flow_but_never_override_the_request() -> None:
    defaults = RequestDefaults(instance_id="default-instance", contact_flow_id="default-flow")

    filled = parse_request(body(InstanceId=None, ContactFlowId=None), defaults)
    explicit = parse_request(body(), defaults)

    assert (filled.instance_id, filled.contact_flow_id) == ("default-instance", "default-flow")
    assert (explicit.instance_id, explicit.contact_flow_id) == (INSTANCE_ID, FLOW_ID)


def test_client_token_is_deterministic_and_distinct_per_purpose_and_request() -> None:
    start = client_token("req-1", "start")

    assert start == client_token("req-1", "start")
    assert start != client_token("req-1", "screen-sharing")
    assert start != client_token("req-2", "start")
    assert len(start) <= 500


def test_allow_lists_refuse_other_instances_and_flows() -> None:
    rules = RequestDefaults(
        allowed_instance_ids=frozenset({INSTANCE_ID}),
        allowed_contact_flow_ids=frozenset({FLOW_ID}),
    )
    assert parse_request(json.dumps(request_body("allowed-1")), rules).instance_id == INSTANCE_ID

    with pytest.raises(RequestRejected) as rejected:
        parse_request(
            json.dumps(request_body("elsewhere-1", InstanceId="other", ContactFlowId="f2")), rules
        )
    assert rejected.value.request_id == "elsewhere-1"
    assert [e.field for e in rejected.value.errors] == ["InstanceId", "ContactFlowId"]


# -- cancels share the queue ----------------------------------------------------------------------


def test_action_defaults_to_start_and_an_explicit_start_is_a_call_request() -> None:
    implicit = parse_message(body())
    explicit = parse_message(body(Action="start"))

    assert isinstance(implicit, CallRequest) and isinstance(explicit, CallRequest)
    assert explicit == implicit


def test_a_cancel_names_its_request_and_takes_the_default_instance_with_a_contact() -> None:
    defaults = RequestDefaults(instance_id="default-instance")

    bare = parse_message(json.dumps({"Action": "cancel", "RequestId": "req-1"}))
    named = parse_message(
        json.dumps({"Action": "cancel", "RequestId": "req-1", "ContactId": "c-1"}), defaults
    )

    assert bare == CancelRequest(action="cancel", request_id="req-1")
    assert isinstance(named, CancelRequest)
    assert (named.request_id, named.contact_id, named.instance_id) == (
        "req-1",
        "c-1",
        "default-instance",
    )


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"Action": "stop", "RequestId": "req-1"}, "Action"),
        ({"Action": 3, "RequestId": "req-1"}, "Action"),
        ({"Action": "cancel", "RequestId": "req 1!"}, "RequestId"),
        ({"Action": "cancel"}, "RequestId"),
        ({"Action": "cancel", "RequestId": "req-1", "DisplayName": "x"}, "DisplayName"),
        ({"Action": "cancel", "RequestId": "req-1", "ContactId": "c-1"}, "InstanceId"),
        ({"Action": "cancel", "RequestId": "req-1", "ContactId": ""}, "ContactId"),
    ],
)
def test_a_malformed_cancel_is_rejected_without_a_request_to_tell(
    document: dict[str, Any], field: str
) -> None:
    with pytest.raises(CancelRejected) as info:
        parse_message(json.dumps(document))

    assert info.value.request_id is None  # the request it names may be live
    assert field in fields_of(info.value)
    if document.get("RequestId") == "req-1":
        assert info.value.names == "req-1"


def test_a_cancel_for_an_instance_outside_the_allow_list_is_rejected() -> None:
    rules = RequestDefaults(allowed_instance_ids=frozenset({INSTANCE_ID}))
    document = {"Action": "cancel", "RequestId": "req-1", "ContactId": "c", "InstanceId": "x"}

    with pytest.raises(CancelRejected) as info:
        parse_message(json.dumps(document), rules)

    assert fields_of(info.value) == {"InstanceId": "not an instance this worker may use"}


def test_parse_request_rejects_a_cancel_without_naming_its_request() -> None:
    rejected = rejection(json.dumps({"Action": "cancel", "RequestId": "req-1"}))

    assert isinstance(rejected, CancelRejected)
    assert rejected.request_id is None
