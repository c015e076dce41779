"""Every hostile body is rejected as a `RequestRejected`, never anything else, and says why.

Property at the parser level (many examples, fast): whatever a producer or an attacker puts on
the queue, `parse_request` raises `RequestRejected` with a non-empty list of field errors, and
with `request_id` set exactly when a valid RequestId could be read (that id is what the
`request.rejected` event is filed under). The rejection stays small whatever the body held, so
that it fits in every sink.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings

from orchestrator.engine.request import RequestRejected, parse_request
from orchestrator.testing.poison import Poison
from tests.reliability.poison import (
    huge_key,
    many_unknown_fields,
    parser_poison,
    valid_document,
)

#: A rejection must fit in one SQS/SNS message and one EventBridge entry (256 KB) together with
#: nine others in a batch: keep it well under a tenth of that.
REJECTION_MAX_BYTES = 16 * 1024

PARSER_SETTINGS = settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def rejection_of(body: str | bytes) -> RequestRejected:
    with pytest.raises(RequestRejected) as caught:
        parse_request(body)
    return caught.value


@PARSER_SETTINGS
@given(parser_poison())
@example(many_unknown_fields("many-keys", 30_000))
@example(huge_key("huge-key", 200_000))
@example(Poison('{"RequestId": "trailing-newline\\n"}', None, ("RequestId ends in a newline",)))
def test_every_hostile_body_is_rejected_with_field_errors(poison: Poison) -> None:
    rejection = rejection_of(poison.body)

    assert rejection.request_id == poison.request_id
    assert rejection.errors, "a rejection names at least one problem"
    for error in rejection.errors:
        assert isinstance(error.field, str) and error.field
        assert isinstance(error.message, str) and error.message
    size = len(json.dumps([e.as_dict() for e in rejection.errors]))
    assert size < REJECTION_MAX_BYTES, f"rejection of {size} bytes"
    assert str(rejection)  # the summary renders whatever the errors hold


@pytest.mark.parametrize("request_id", ["a", "order-1234:call.2_x", "r" * 128])
def test_the_valid_baseline_really_is_valid(request_id: str) -> None:
    """The strategies corrupt this document: it must be accepted as it is."""
    request = parse_request(json.dumps(valid_document(request_id)))
    assert request.request_id == request_id
    assert request.attributes == {"order": "1234", "channel-name": "app"}


@pytest.mark.parametrize(
    ("pascal", "snake"),
    [
        ("InstanceId", "instance_id"),
        ("ScreenSharing", "screen_sharing"),
        ("Description", "description"),
    ],
)
def test_fields_spelt_in_snake_case_are_unknown_fields(pascal: str, snake: str) -> None:
    document = valid_document("snake-1")
    document[snake] = document.pop(pascal)

    rejection = rejection_of(json.dumps(document))

    assert rejection.request_id == "snake-1"
    assert {"field": snake, "message": "unknown field"} in [e.as_dict() for e in rejection.errors]


def test_a_newline_after_a_request_id_or_attribute_key_is_not_allowed() -> None:
    document = valid_document("ends-with-newline\n")
    assert rejection_of(json.dumps(document)).request_id is None

    document = valid_document("good-id")
    document["Attributes"] = {"order\n": "1"}
    rejection = rejection_of(json.dumps(document))
    assert rejection.request_id == "good-id"
    assert [e.field for e in rejection.errors] == ["Attributes"]


def test_a_body_with_thousands_of_problems_lists_the_first_and_counts_the_rest() -> None:
    rejection = rejection_of(many_unknown_fields("many", 5_000).body)

    assert rejection.request_id == "many"
    fields = [e.field for e in rejection.errors]
    assert fields[:3] == ["x0", "x1", "x2"]
    assert rejection.errors[-1].field == "body"
    assert "more" in rejection.errors[-1].message
    shown = len(rejection.errors) - 1
    assert str(5_000 - shown) in rejection.errors[-1].message
