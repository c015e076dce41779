"""SQS from the test side: fresh queues (with a dead-letter queue), batched sends, draining,
counts, and following an events queue the way a requester's backend would.

Every function takes an aiobotocore SQS client and talks to SQS through the SQS boundary
(`orchestrator.sqs`); none of them is used by the daemon.

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
from orchestrator.sqs import (
    OutgoingMessage,
    QueueMessage,
    approximate_counts,
    batches,
    delete_batch,
    is_fifo,
    queue_arn,
    receive,
    send_batch,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

#: A batch request's bodies stay under this many bytes: over a queue's 256 KiB but under SQS's
#: 1 MiB even once JSON-escaped (the local server takes such batches; tests send big bodies).
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
    policy = json.dumps(
        {"deadLetterTargetArn": await queue_arn(sqs, dlq), "maxReceiveCount": max_receive_count}
    )
    queue = (
        await sqs.create_queue(
            QueueName=f"{name}{suffix}", Attributes={**attrs, "RedrivePolicy": policy}
        )
    )["QueueUrl"]
    return queue, dlq


async def send_all(sqs: SQSClient, queue_url: str, bodies: Sequence[str]) -> list[str]:
    """Send `bodies` in order with SendMessageBatch; the SQS MessageId of each.

    A FIFO queue (its URL ends in `.fifo`) gets one message group per message.
    """
    fifo = is_fifo(queue_url)
    messages = [
        OutgoingMessage(body, group_id=f"g-{i}", dedup_id=uuid.uuid4().hex)
        if fifo
        else OutgoingMessage(body)
        for i, body in enumerate(bodies)
    ]
    ids: list[str] = []
    for batch in batches(messages, lambda m: m.size, max_bytes=BATCH_BYTES):
        results = await send_batch(sqs, queue_url, batch)
        if any(r.error for r in results):
            raise RuntimeError(f"SendMessageBatch failed: {[str(r.error) for r in results]}")
        ids.extend(str(r.message_id) for r in results)
    return ids


#: (visible, in flight) messages, as SQS reports them.
queue_counts = approximate_counts


async def receive_and_delete(
    sqs: SQSClient, queue_url: str, *, wait_s: int = 0
) -> list[QueueMessage]:
    """One ReceiveMessage (up to 10, with their message attributes); what came is deleted."""
    messages = await receive(sqs, queue_url, wait_time_s=wait_s, message_attributes=True)
    if messages:
        await delete_batch(sqs, queue_url, messages)
    return messages


async def drain_messages(sqs: SQSClient, queue_url: str) -> list[tuple[str, dict[str, Any]]]:
    """Every visible message of a queue as (body, message attributes); received and deleted."""
    out: list[tuple[str, dict[str, Any]]] = []
    while messages := await receive_and_delete(sqs, queue_url):
        out.extend((m.body, dict(m.attributes)) for m in messages)
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
            self.add(m.body for m in messages)
        return len(messages)

    async def follow(self, sqs: SQSClient, queue_url: str) -> None:
        """Read the queue (long polls of 1 s) until cancelled."""
        while True:
            await self.receive_once(sqs, queue_url, wait_s=1)

    async def sweep(self, sqs: SQSClient, queue_url: str) -> None:
        """Read whatever is visible now."""
        while await self.receive_once(sqs, queue_url, wait_s=0):
            pass
