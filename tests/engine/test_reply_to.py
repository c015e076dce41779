"""Which reply queues a request may name: URLs as ARNs, patterns, and the rejection."""

from __future__ import annotations

import pytest

from orchestrator.engine.reply_to import ReplyToPolicy
from orchestrator.engine.request import RequestDefaults, RequestRejected, parse_request
from orchestrator.testing.requests import request_body

AWS_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orchestrator-replies-ab12"
LOCAL = "http://127.0.0.1:4566"


def policy(*allowed: str, region: str = "eu-west-1", endpoint: str | None = None) -> ReplyToPolicy:
    return ReplyToPolicy(allowed=allowed, region=region, endpoint=endpoint)


@pytest.mark.parametrize(
    ("url", "arn"),
    [
        (AWS_URL, "arn:aws:sqs:eu-west-1:123456789012:orchestrator-replies-ab12"),
        (
            "https://eu-west-1.queue.amazonaws.com/123456789012/r.fifo",
            "arn:aws:sqs:eu-west-1:123456789012:r.fifo",
        ),
        (f"{LOCAL}/000000000000/replies", "arn:aws:sqs:eu-west-1:000000000000:replies"),
    ],
)
def test_a_queue_url_reads_as_its_arn(url: str, arn: str) -> None:
    assert policy(endpoint=LOCAL).queue_arn(url) == arn


def test_china_and_govcloud_urls_name_their_partition() -> None:
    china = ReplyToPolicy(region="cn-north-1")
    url = "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/r"
    assert china.queue_arn(url) == "arn:aws-cn:sqs:cn-north-1:123456789012:r"
    gov = ReplyToPolicy(region="us-gov-west-1")
    url = "https://sqs.us-gov-west-1.amazonaws.com/123456789012/r"
    assert gov.queue_arn(url) == "arn:aws-us-gov:sqs:us-gov-west-1:123456789012:r"


@pytest.mark.parametrize(
    "url",
    [
        "https://sqs.us-east-1.amazonaws.com/123456789012/replies",  # another region
        "http://sqs.eu-west-1.amazonaws.com/123456789012/replies",  # not https
        "http://attacker.example:4566/123456789012/replies",  # not the worker's endpoint
        "http://127.0.0.1:9999/123456789012/replies",  # another port
        "https://sqs.eu-west-1.amazonaws.com/replies",  # no account
        "https://sqs.eu-west-1.amazonaws.com/123456789012/replies?x=1",
        "ftp://sqs.eu-west-1.amazonaws.com/123456789012/replies",
    ],
)
def test_a_url_the_worker_would_not_send_to_has_no_arn(url: str) -> None:
    assert policy(endpoint=LOCAL).queue_arn(url) is None


def test_a_star_matches_within_one_arn_field_only() -> None:
    allowed = policy("arn:aws:sqs:eu-west-1:123456789012:orchestrator-replies-*")
    assert allowed.refusal(AWS_URL) is None
    other = "https://sqs.eu-west-1.amazonaws.com/123456789012/payroll"
    assert "matches no pattern" in (allowed.refusal(other) or "")
    assert policy("arn:aws:sqs:eu-west-1:*:*").refusal(AWS_URL) is None
    assert policy("arn:aws:sqs:*:123456789012:orchestrator-replies-ab12").refusal(AWS_URL) is None
    # A `*` never stands for several fields: a pattern must spell all six.
    with pytest.raises(ValueError, match="not a queue ARN pattern"):
        policy("arn:aws:sqs:eu-west-1:*")


def test_an_empty_allow_list_refuses_every_reply_queue_naming_the_setting() -> None:
    assert "reply_to_allowed is empty" in (ReplyToPolicy().refusal(AWS_URL) or "")


@pytest.mark.parametrize("pattern", ["orchestrator-replies-*", "arn:aws:sns:eu-west-1:1:x", ""])
def test_a_pattern_that_is_not_a_queue_arn_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="not a queue ARN pattern"):
        ReplyToPolicy(allowed=(pattern,))


def test_a_request_naming_a_queue_outside_the_allow_list_is_rejected_on_reply_to() -> None:
    defaults = RequestDefaults(reply_to=policy("arn:aws:sqs:eu-west-1:123456789012:mine-*"))
    with pytest.raises(RequestRejected) as caught:
        parse_request(request_body("r-1", ReplyTo=AWS_URL), defaults)
    assert [e.field for e in caught.value.errors] == ["ReplyTo"]
    assert caught.value.request_id == "r-1"
    assert caught.value.reply_to is None  # its rejection reaches nobody there


def test_an_allowed_reply_queue_is_kept_and_never_sent_to_connect() -> None:
    defaults = RequestDefaults(reply_to=policy("arn:aws:sqs:eu-west-1:123456789012:*"))
    request = parse_request(request_body("r-1", ReplyTo=AWS_URL), defaults)
    assert request.reply_to == AWS_URL
    assert "ReplyTo" not in request.start_webrtc_contact_params("token")


def test_an_invalid_request_with_an_allowed_reply_queue_is_rejected_there_too() -> None:
    defaults = RequestDefaults(reply_to=policy("arn:aws:sqs:eu-west-1:123456789012:*"))
    with pytest.raises(RequestRejected) as caught:
        parse_request(request_body("r-1", ReplyTo=AWS_URL, InstanceId=""), defaults)
    assert caught.value.reply_to == AWS_URL


def test_reply_to_must_look_like_a_queue_url() -> None:
    with pytest.raises(RequestRejected) as caught:
        parse_request(request_body("r-1", ReplyTo="mailto:me@example.com"))
    assert [e.field for e in caught.value.errors] == ["ReplyTo"]
