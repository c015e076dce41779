"""The SQS calls on messages, batched: receive, send, delete, change visibility.

Each batch call answers per entry: `None` for success, else a `QueueError` naming SQS's code and
message. A call that fails whole raises (the caller knows whether that is worth retrying).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from orchestrator.errors import QueueError
from orchestrator.sqs.limits import MAX_BATCH_ENTRIES
from orchestrator.sqs.messages import OutgoingMessage, QueueMessage, received

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

SystemAttribute = Literal[
    "ApproximateReceiveCount",
    "MessageGroupId",
    "SentTimestamp",
    "MessageDeduplicationId",
    "AWSTraceHeader",
]
#: What the worker reads of each message: enough for `QueueMessage` (the producer's X-Ray trace
#: context included).
WORKER_ATTRIBUTES: tuple[SystemAttribute, ...] = (
    "ApproximateReceiveCount",
    "MessageGroupId",
    "SentTimestamp",
    "AWSTraceHeader",
)
#: The message attributes that carry a producer's W3C trace context.
TRACE_ATTRIBUTES = ("traceparent", "tracestate")
#: What a copy of a message needs (the DLQ tools): its FIFO ids too.
COPY_ATTRIBUTES: tuple[SystemAttribute, ...] = (*WORKER_ATTRIBUTES, "MessageDeduplicationId")


async def receive(
    client: SQSClient,
    queue_url: str,
    *,
    max_messages: int = MAX_BATCH_ENTRIES,
    wait_time_s: float = 0,
    visibility_timeout_s: int | None = None,
    system_attributes: Sequence[SystemAttribute] = WORKER_ATTRIBUTES,
    message_attributes: bool | Sequence[str] = TRACE_ATTRIBUTES,
) -> list[QueueMessage]:
    """One ReceiveMessage: up to `max_messages` (1 to 10), waiting up to `wait_time_s` for the
    first; hidden for `visibility_timeout_s` (the queue's default when None). Message
    attributes: all (`True`), the named ones (by default the trace context's), or none."""
    request: dict[str, Any] = {
        "QueueUrl": queue_url,
        "MaxNumberOfMessages": max(1, min(MAX_BATCH_ENTRIES, max_messages)),
        "WaitTimeSeconds": int(wait_time_s),
    }
    if system_attributes:
        request["MessageSystemAttributeNames"] = list(system_attributes)
    if visibility_timeout_s is not None:
        request["VisibilityTimeout"] = visibility_timeout_s
    if message_attributes is True:
        request["MessageAttributeNames"] = ["All"]
    elif message_attributes:
        request["MessageAttributeNames"] = list(message_attributes)
    response = await client.receive_message(**request)
    return [received(raw) for raw in response.get("Messages", [])]


def _per_entry(response: Mapping[str, Any], count: int) -> list[QueueError | None]:
    failed = {
        str(entry["Id"]): QueueError(f"{entry.get('Code')}: {entry.get('Message', '')}")
        for entry in response.get("Failed") or []
    }
    return [failed.get(str(i)) for i in range(count)]


@dataclass(frozen=True)
class SendResult:
    """One message of a SendMessageBatch: its SQS MessageId, or why it was not sent."""

    message_id: str | None
    error: QueueError | None


async def send_batch(
    client: SQSClient, queue_url: str, messages: Sequence[OutgoingMessage]
) -> list[SendResult]:
    """One SendMessageBatch of at most 10 messages (see `messages.batches`), in order."""
    response = await client.send_message_batch(
        QueueUrl=queue_url,
        Entries=[m.entry(i) for i, m in enumerate(messages)],  # type: ignore[misc]
    )
    ids = {str(e["Id"]): e["MessageId"] for e in response.get("Successful", [])}
    errors = _per_entry(dict(response), len(messages))
    return [SendResult(ids.get(str(i)), errors[i]) for i in range(len(messages))]


async def delete_batch(
    client: SQSClient, queue_url: str, messages: Sequence[QueueMessage]
) -> list[QueueError | None]:
    """One DeleteMessageBatch of at most 10 messages."""
    response = await client.delete_message_batch(
        QueueUrl=queue_url,
        Entries=[{"Id": str(i), "ReceiptHandle": m.receipt} for i, m in enumerate(messages)],
    )
    return _per_entry(dict(response), len(messages))


async def change_visibility_batch(
    client: SQSClient, queue_url: str, changes: Sequence[tuple[QueueMessage, int]]
) -> list[QueueError | None]:
    """One ChangeMessageVisibilityBatch of at most 10 (message, seconds from now) pairs; 0 makes
    a message visible at once."""
    response = await client.change_message_visibility_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m.receipt, "VisibilityTimeout": timeout}
            for i, (m, timeout) in enumerate(changes)
        ],
    )
    return _per_entry(dict(response), len(changes))
