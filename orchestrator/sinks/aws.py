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


def _attributes(event: LifecycleEvent, **more: str) -> dict[str, str]:
    """An event's message attributes: its `type` (for subscription filters), its `trace_id`
    when the daemon traces, and `more`."""
    out = {"type": event.type.value, **more}
    if event.trace_id:
        out["trace_id"] = event.trace_id
    return out


class _AwsSink:
    """A sink on one AWS target (a queue URL, a topic ARN, a bus name) through `client`; whether
    it carries connection data is `[events] include_connection_data`, passed in."""

    def __init__(self, client: Any, target: str, *, include_connection_data: bool) -> None:
        self._client = client
        self._target = target
        self._include = include_connection_data
        #: A FIFO queue or topic: one message group per request, deduplicated by event id.
        self._fifo = target.endswith(".fifo")

    def _body(self, event: LifecycleEvent) -> str:
        return event.to_json(include_connection_data=self._include)


class SqsEventSink(_AwsSink):
    """Events as messages on an SQS queue (FIFO queues: grouped by request, deduplicated by id),
    in batches within SQS's limits (10 entries, 256 KiB)."""

    name = "sqs"
    _client: SQSClient

    def _message(self, event: LifecycleEvent) -> OutgoingMessage:
        return OutgoingMessage(
            self._body(event),
            attributes=string_attributes(_attributes(event, request_id=event.request_id)),
            # One message group per request; deduplicated by the event's id.
            group_id=event.request_id if self._fifo else None,
            dedup_id=event.id if self._fifo else None,
        )

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        messages = [self._message(e) for e in events]
        for batch in batches(messages, lambda m: m.size):
            results = await send_batch(self._client, self._target, batch)
            errors = sorted({str(r.error).partition(":")[0] for r in results if r.error})
            if errors:
                failed = sum(1 for r in results if r.error)
                raise SinkError(f"SQS refused {failed} event(s): {', '.join(errors)}")


class SnsEventSink(_AwsSink):
    """Events published to an SNS topic, with `type` and `request_id` attributes for
    subscription filters (one subscription per backend replica, filtered by its requests)."""

    name = "sns"
    _client: SNSClient

    def _entry(self, index: int, event: LifecycleEvent) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "Id": str(index),
            "Message": self._body(event),
            "MessageAttributes": string_attributes(_attributes(event, request_id=event.request_id)),
        }
        if self._fifo:  # one message group per request; deduplicated by the event's id
            entry["MessageGroupId"] = event.request_id
            entry["MessageDeduplicationId"] = event.id[:MAX_FIFO_ID_CHARS]
        return entry

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        for chunk in _chunks(events):
            response = await self._client.publish_batch(
                TopicArn=self._target,
                PublishBatchRequestEntries=[self._entry(i, e) for i, e in enumerate(chunk)],  # type: ignore[misc]
            )
            if response.get("Failed"):
                raise _refused("SNS", list(response["Failed"]))


class EventBridgeSink(_AwsSink):
    """Events put on an EventBridge bus: source `contact-orchestrator`, detail-type = event type."""

    name = "eventbridge"
    _client: EventBridgeClient

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        for chunk in _chunks(events):
            response = await self._client.put_events(
                Entries=[
                    {
                        "Source": EVENT_SOURCE,
                        "DetailType": e.type.value,
                        "Detail": self._body(e),
                        "EventBusName": self._target,
                        "Resources": [],
                    }
                    for e in chunk
                ]
            )
            if response.get("FailedEntryCount"):
                failed = [x for x in response.get("Entries", []) if x.get("ErrorCode")]
                raise _refused("EventBridge", failed)
