"""SQS from the test side: fresh queues (with a dead-letter queue), batched sends, draining,
counts, and following an events queue the way a requester's backend would.

Every function takes an aiobotocore SQS client; none of them is used by the daemon.

```python
queue, dlq = await create_queue_with_dlq(sqs, max_receive_count=2)
await send_all(sqs, queue, [request_body(f"r-{i}") for i in range(25)])
follower = EventFollower()
await follower.sweep(sqs, events_queue)
assert final_types(follower.events) == {...}
```
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from orchestrator.engine.events import LifecycleEvent

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

#: A batch request's bodies stay under this many bytes, so that it stays under SQS's 1 MiB even
#: once JSON-escaped.
BATCH_BYTES = 600_000


def fresh_name(prefix: str) -> str:
    """A queue name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def create_queue(sqs: SQSClient, prefix: str = "events") -> str:
    """A fresh, empty standard queue; its URL."""
    return (await sqs.create_queue(QueueName=fresh_name(prefix)))["QueueUrl"]


async def create_queue_with_dlq(
    sqs: SQSClient, *, max_receive_count: int = 2, fifo: bool = False, prefix: str = "req"
) -> tuple[str, str]:
    """A fresh request queue whose redrive policy moves a message to a fresh dead-letter queue
    after `max_receive_count` receives: (queue URL, dead-letter queue URL)."""
    suffix = ".fifo" if fifo else ""
    name = fresh_name(prefix)
    attrs: dict[Any, str] = {"FifoQueue": "true"} if fifo else {}
    dlq = (await sqs.create_queue(QueueName=f"{name}-dlq{suffix}", Attributes=attrs))["QueueUrl"]
    dlq_arn = (await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))[
        "Attributes"
    ]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})
    queue = (
        await sqs.create_queue(
            QueueName=f"{name}{suffix}", Attributes={**attrs, "RedrivePolicy": policy}
        )
    )["QueueUrl"]
    return queue, dlq


def _batches(bodies: Sequence[str]) -> list[list[str]]:
    """`bodies` in order, in batches of at most 10 and `BATCH_BYTES`."""
    batches: list[list[str]] = [[]]
    for body in bodies:
        batch = batches[-1]
        if batch and (len(batch) == 10 or sum(map(len, batch)) + len(body) > BATCH_BYTES):
            batches.append(batch := [])
        batch.append(body)
    return [batch for batch in batches if batch]


async def send_all(sqs: SQSClient, queue_url: str, bodies: Sequence[str]) -> list[str]:
    """Send `bodies` in order with SendMessageBatch; the SQS MessageId of each.

    A FIFO queue (its URL ends in `.fifo`) gets one message group per message.
    """
    fifo = queue_url.endswith(".fifo")
    ids: list[str] = []
    sent = 0
    for batch in _batches(bodies):
        entries: list[Any] = []
        for i, body in enumerate(batch):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": body}
            if fifo:
                entry["MessageGroupId"] = f"g-{sent + i}"
                entry["MessageDeduplicationId"] = uuid.uuid4().hex
            entries.append(entry)
        response = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if response.get("Failed"):
            raise RuntimeError(f"SendMessageBatch failed: {response['Failed']}")
        by_entry = {entry["Id"]: entry["MessageId"] for entry in response["Successful"]}
        ids.extend(by_entry[str(i)] for i in range(len(batch)))
        sent += len(batch)
    return ids


async def queue_counts(sqs: SQSClient, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages, as SQS reports them."""
    attrs = (
        await sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )
    )["Attributes"]
    return (
        int(attrs["ApproximateNumberOfMessages"]),
        int(attrs["ApproximateNumberOfMessagesNotVisible"]),
    )


async def receive_and_delete(
    sqs: SQSClient, queue_url: str, *, wait_s: int = 0
) -> list[MessageTypeDef]:
    """One ReceiveMessage (up to 10, with their message attributes); what came is deleted."""
    got = await sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait_s,
        MessageAttributeNames=["All"],
    )
    messages = got.get("Messages", [])
    if messages:
        await sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
    return messages


async def drain_messages(sqs: SQSClient, queue_url: str) -> list[tuple[str, dict[str, Any]]]:
    """Every visible message of a queue as (body, message attributes); received and deleted."""
    out: list[tuple[str, dict[str, Any]]] = []
    while messages := await receive_and_delete(sqs, queue_url):
        out.extend((m.get("Body", ""), dict(m.get("MessageAttributes", {}))) for m in messages)
    return out


async def drain_bodies(sqs: SQSClient, queue_url: str) -> list[str]:
    """Every message body currently visible on a queue (received and deleted)."""
    return [body for body, _ in await drain_messages(sqs, queue_url)]


# -- final events ---------------------------------------------------------------------------------


def final_types(events: Iterable[LifecycleEvent | Mapping[str, Any]]) -> dict[str, set[str]]:
    """The final event types each request reached, from events or their JSON form.

    More than one type for a request is a broken promise; the set shows it.
    """
    out: dict[str, set[str]] = {}
    for event in events:
        if isinstance(event, LifecycleEvent):
            if event.final:
                out.setdefault(event.request_id, set()).add(event.type.value)
        elif event.get("final"):
            out.setdefault(str(event["request_id"]), set()).add(str(event["type"]))
    return out


def first_finals(events: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Each request's first final event (JSON form), by RequestId."""
    out: dict[str, Mapping[str, Any]] = {}
    for event in events:
        if event.get("final"):
            out.setdefault(str(event["request_id"]), event)
    return out


@dataclass
class EventFollower:
    """The events an SQS sink wrote to a queue, read as a requester's backend reads them.

    `events` keeps every event as sent (duplicates included); `finals` the final types by request.
    `on_new` is called once per distinct event id, in arrival order.
    """

    on_new: Callable[[dict[str, Any]], None] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    finals: dict[str, set[str]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    #: Set (and replaced) whenever events arrive.
    changed: anyio.Event = field(default_factory=anyio.Event)

    def add(self, bodies: Iterable[str]) -> None:
        for body in bodies:
            event = json.loads(body)
            self.events.append(event)
            if event.get("final"):
                self.finals.setdefault(event["request_id"], set()).add(event["type"])
            if event.get("id") not in self.seen:
                self.seen.add(event.get("id"))
                if self.on_new is not None:
                    self.on_new(event)
        self.changed.set()
        self.changed = anyio.Event()

    async def next_arrival(self, *, within_s: float) -> None:
        """Until events next arrive, or `within_s` seconds."""
        with anyio.move_on_after(within_s):
            await self.changed.wait()

    async def wait_until(self, condition: Callable[[], bool], deadline: float) -> bool:
        """Until `condition()` holds (checked as events arrive) or the monotonic `deadline`;
        whether it holds."""
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with anyio.move_on_after(remaining):
                await self.changed.wait()
        return True

    async def receive_once(self, sqs: SQSClient, queue_url: str, *, wait_s: int) -> int:
        messages = await receive_and_delete(sqs, queue_url, wait_s=wait_s)
        if messages:
            self.add(m.get("Body", "") for m in messages)
        return len(messages)

    async def follow(self, sqs: SQSClient, queue_url: str) -> None:
        """Read the queue (long polls of 1 s) until cancelled."""
        while True:
            await self.receive_once(sqs, queue_url, wait_s=1)

    async def sweep(self, sqs: SQSClient, queue_url: str) -> None:
        """Read whatever is visible now."""
        while await self.receive_once(sqs, queue_url, wait_s=0):
            pass
