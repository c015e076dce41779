"""The SQS boundary's pure parts: batches within SQS's limits, what SQS counts as a message's
size, FIFO ids within SQS's length, the region in a queue URL, the limits named once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.sqs import (
    MAX_FIFO_ID_CHARS,
    OutgoingMessage,
    batches,
    region_of,
    string_attributes,
)


def test_batches_respect_both_entry_and_byte_limits() -> None:
    sizes = [100] * 25
    assert [len(b) for b in batches(sizes, lambda n: n)] == [10, 10, 5]
    big = [150_000, 150_000, 10, 300_000, 5]
    assert list(batches(big, lambda n: n, max_bytes=262_144)) == [
        [150_000],
        [150_000, 10],
        [300_000],
        [5],
    ]


def test_a_message_size_counts_its_body_and_its_attributes_in_utf8_bytes() -> None:
    bare = OutgoingMessage("héllo")
    assert bare.size == 6
    tagged = OutgoingMessage("héllo", attributes=string_attributes({"type": "request.rejected"}))
    assert tagged.size == 6 + len("type") + len("String") + len("request.rejected")


def test_fifo_ids_are_cut_to_sqs_length_and_set_only_when_given() -> None:
    long_id = "r" * 300
    entry = OutgoingMessage("{}", group_id=long_id, dedup_id=long_id).entry(3)
    assert entry["Id"] == "3"
    assert len(entry["MessageGroupId"]) == len(entry["MessageDeduplicationId"]) == MAX_FIFO_ID_CHARS
    assert "MessageGroupId" not in OutgoingMessage("{}").entry(0)


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/q", "eu-west-1"),
        ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", "cn-north-1"),
        ("https://ap-south-1.queue.amazonaws.com/123456789012/q", "ap-south-1"),
        ("http://localhost:4566/000000000000/q", None),
    ],
)
def test_the_region_comes_from_an_aws_queue_url(url: str, region: str | None) -> None:
    assert region_of(url) == region


def test_sqs_visibility_ceiling_is_written_once() -> None:
    """SQS's 12-hour visibility ceiling is `MAX_VISIBILITY_TIMEOUT_S`; no module repeats it."""
    package = Path(__file__).resolve().parents[2] / "orchestrator"
    limits = package / "sqs" / "limits.py"
    bare = re.compile(r"\b43_?200\b")
    repeated = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path != limits and bare.search(path.read_text(encoding="utf-8"))
    ]
    assert not repeated
    assert bare.search(limits.read_text(encoding="utf-8"))
