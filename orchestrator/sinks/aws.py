"""Event sinks on AWS: an SQS queue, an SNS topic, an EventBridge bus (clients passed in).

Each sends up to 10 events per call (the batch limit of all three APIs) and raises `SinkError`
naming the entries AWS refused, so the fan-out retries the batch. The SQS sink sends through the
SQS boundary (`orchestrator.sqs`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from orchestrator.engine.events import LifecycleEvent
from orchestrator.errors import SinkError
from orchestrator.sqs import (
    MAX_FIFO_ID_CHARS,
    OutgoingMessage,
    batches,
    is_fifo,
    send_batch,
    string_attributes,
)

if TYPE_CHECKING:
    from types_aiobotocore_events import EventBridgeClient
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient

BATCH = 10
EVENT_SOURCE = "contact-orchestrator"


def _chunks(events: Sequence[LifecycleEvent]) -> Iterator[Sequence[LifecycleEvent]]:
    for start in range(0, len(events), BATCH):
        yield events[start : start + BATCH]


def _refused(kind: str, failed: list[Any]) -> SinkError:
    codes = ", ".join(sorted({str(f.get("Code") or f.get("ErrorCode")) for f in failed}))
    return SinkError(f"{kind} refused {len(failed)} event(s): {codes}")


class SqsEventSink:
    """Events as messages on an SQS queue (FIFO queues: grouped by request, deduplicated by id),
    in batches within SQS's limits (10 entries, 256 KiB)."""

    name = "sqs"

    def __init__(
        self, client: SQSClient, queue_url: str, *, include_connection_data: bool = True
    ) -> None:
        self._client = client
        self._queue_url = queue_url
        self._include = include_connection_data
        self._fifo = is_fifo(queue_url)

    def _message(self, event: LifecycleEvent) -> OutgoingMessage:
        return OutgoingMessage(
            event.to_json(include_connection_data=self._include),
            attributes=string_attributes(
                {"type": event.type.value, "request_id": event.request_id}
            ),
            # One message group per request; deduplicated by the event's id.
            group_id=event.request_id if self._fifo else None,
            dedup_id=event.id if self._fifo else None,
        )

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        messages = [self._message(e) for e in events]
        for batch in batches(messages, lambda m: m.size):
            results = await send_batch(self._client, self._queue_url, batch)
            errors = sorted({str(r.error).partition(":")[0] for r in results if r.error})
            if errors:
                failed = sum(1 for r in results if r.error)
                raise SinkError(f"SQS refused {failed} event(s): {', '.join(errors)}")


class SnsEventSink:
    """Events published to an SNS topic, with a `type` attribute for subscription filters."""

    name = "sns"

    def __init__(
        self, client: SNSClient, topic_arn: str, *, include_connection_data: bool = True
    ) -> None:
        self._client = client
        self._topic_arn = topic_arn
        self._include = include_connection_data
        self._fifo = topic_arn.endswith(".fifo")

    def _entry(self, index: int, event: LifecycleEvent) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "Id": str(index),
            "Message": event.to_json(include_connection_data=self._include),
            "MessageAttributes": string_attributes({"type": event.type.value}),
        }
        if self._fifo:  # one message group per request; deduplicated by the event's id
            entry["MessageGroupId"] = event.request_id
            entry["MessageDeduplicationId"] = event.id[:MAX_FIFO_ID_CHARS]
        return entry

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        for chunk in _chunks(events):
            response = await self._client.publish_batch(
                TopicArn=self._topic_arn,
                PublishBatchRequestEntries=[self._entry(i, e) for i, e in enumerate(chunk)],  # type: ignore[misc]
            )
            if response.get("Failed"):
                raise _refused("SNS", list(response["Failed"]))


class EventBridgeSink:
    """Events put on an EventBridge bus: source `contact-orchestrator`, detail-type = event type."""

    name = "eventbridge"

    def __init__(
        self, client: EventBridgeClient, bus: str, *, include_connection_data: bool = True
    ) -> None:
        self._client = client
        self._bus = bus
        self._include = include_connection_data

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        for chunk in _chunks(events):
            response = await self._client.put_events(
                Entries=[
                    {
                        "Source": EVENT_SOURCE,
                        "DetailType": e.type.value,
                        "Detail": e.to_json(include_connection_data=self._include),
                        "EventBusName": self._bus,
                        "Resources": [],
                    }
                    for e in chunk
                ]
            )
            if response.get("FailedEntryCount"):
                failed = [x for x in response.get("Entries", []) if x.get("ErrorCode")]
                raise _refused("EventBridge", failed)
