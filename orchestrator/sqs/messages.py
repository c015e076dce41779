"""Messages both ways: one received (`QueueMessage`) and one to send (`OutgoingMessage`), and the
batches SQS accepts them in (10 entries, the queue's MaximumMessageSize summed)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from orchestrator.sqs.limits import DEFAULT_MAX_MESSAGE_BYTES, MAX_BATCH_ENTRIES, MAX_FIFO_ID_CHARS

T = TypeVar("T")


@dataclass(frozen=True)
class QueueMessage:
    """One received message. `receipt` identifies this delivery (not the message)."""

    message_id: str
    body: str
    receipt: str = field(repr=False)
    receive_count: int = 1
    group_id: str | None = None
    #: When the message was sent to the queue (epoch seconds; SQS's SentTimestamp).
    sent_at: float | None = None
    dedup_id: str | None = None
    #: Its message attributes, as SQS returns them (only when they were asked for).
    attributes: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: SQS's `AWSTraceHeader` system attribute: the producer's X-Ray trace context, if any.
    trace_header: str | None = field(default=None, repr=False)


def _epoch_ms(value: str | None) -> float | None:
    try:
        return int(value) / 1000.0 if value else None
    except ValueError:
        return None


def received(raw: Mapping[str, Any]) -> QueueMessage:
    """A `QueueMessage` from one entry of ReceiveMessage's `Messages`."""
    system = raw.get("Attributes", {})
    return QueueMessage(
        message_id=raw["MessageId"],
        body=raw.get("Body", ""),
        receipt=raw["ReceiptHandle"],
        receive_count=int(system.get("ApproximateReceiveCount", "1")),
        group_id=system.get("MessageGroupId"),
        sent_at=_epoch_ms(system.get("SentTimestamp")),
        dedup_id=system.get("MessageDeduplicationId"),
        attributes=dict(raw.get("MessageAttributes") or {}),
        trace_header=system.get("AWSTraceHeader"),
    )


def body_bytes(body: str) -> int:
    return len(body.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class OutgoingMessage:
    """A message to send. On a FIFO queue `group_id` is required; `dedup_id` is needed unless
    the queue deduplicates by content. Both are cut to SQS's 128 characters."""

    body: str
    #: Message attributes, as SendMessage takes them (`{"type": {"DataType": ..., ...}}`).
    attributes: Mapping[str, Any] = field(default_factory=dict)
    group_id: str | None = None
    dedup_id: str | None = None

    @property
    def size(self) -> int:
        """What SQS counts against MaximumMessageSize: the body and every attribute's name,
        type and value."""
        total = body_bytes(self.body)
        for name, value in self.attributes.items():
            total += body_bytes(name) + body_bytes(str(value.get("DataType", "")))
            total += body_bytes(str(value.get("StringValue", "")))
            total += len(value.get("BinaryValue", b""))
        return total

    def entry(self, index: int) -> dict[str, Any]:
        """Its entry in a SendMessageBatch."""
        out: dict[str, Any] = {"Id": str(index), "MessageBody": self.body}
        if self.attributes:
            out["MessageAttributes"] = dict(self.attributes)
        if self.group_id is not None:
            out["MessageGroupId"] = self.group_id[:MAX_FIFO_ID_CHARS]
        if self.dedup_id is not None:
            out["MessageDeduplicationId"] = self.dedup_id[:MAX_FIFO_ID_CHARS]
        return out


def string_attributes(values: Mapping[str, str]) -> dict[str, Any]:
    """Message attributes of type String."""
    return {name: {"DataType": "String", "StringValue": value} for name, value in values.items()}


def batches(
    items: Iterable[T],
    size: Callable[[T], int],
    *,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_entries: int = MAX_BATCH_ENTRIES,
) -> Iterator[list[T]]:
    """`items` in order, in batches SQS accepts: at most `max_entries` entries and `max_bytes`
    of payload each. An item that alone exceeds `max_bytes` is yielded on its own (the caller
    reports it)."""
    batch: list[T] = []
    total = 0
    for item in items:
        n = size(item)
        if batch and (len(batch) == max_entries or total + n > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(item)
        total += n
    if batch:
        yield batch
