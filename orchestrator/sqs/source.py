"""The queue-source boundary: where call requests come from, and its SQS implementation.

`QueueSource` is what the worker needs from a queue. `SqsQueueSource` is the real one (client
passed in; deletes and visibility changes are batched across concurrent lifecycles);
`orchestrator.testing.memory_queue.MemoryQueue` has the same visibility semantics in memory, for
benchmarks that must not measure a local SQS server and for the contract tests both pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, Self

from botocore.exceptions import ClientError

from orchestrator.batcher import Batcher
from orchestrator.errors import QueueError
from orchestrator.sqs import trace_context
from orchestrator.sqs.calls import change_visibility_batch, delete_batch, receive, send_batch
from orchestrator.sqs.messages import OutgoingMessage, QueueMessage, string_attributes
from orchestrator.sqs.queues import redrive_policy

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


class QueueSource(Protocol):
    async def receive(
        self, max_messages: int, *, wait_time_s: float, visibility_timeout_s: int
    ) -> list[QueueMessage]:
        """Up to `max_messages` messages, waiting up to `wait_time_s` for the first."""
        ...

    async def delete(self, message: QueueMessage) -> None:
        """Acknowledge: the message is done for good."""
        ...

    async def change_visibility(self, message: QueueMessage, timeout_s: int) -> None:
        """Hide the message for `timeout_s` more seconds from now (0: hand it back at once)."""
        ...

    async def max_receive_count(self) -> int | None:
        """Deliveries before the queue moves a message to its dead-letter queue, if it has one."""
        ...


class SqsQueueSource:
    """Receives from one SQS queue. Use as an async context manager (it runs the batchers)."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self.queue_url = queue_url
        self._deletes: Batcher[QueueMessage] = Batcher(self._delete_batch, name="sqs.delete")
        self._visibility: Batcher[tuple[QueueMessage, int]] = Batcher(
            self._visibility_batch, name="sqs.visibility"
        )
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        await self._stack.enter_async_context(self._deletes)
        await self._stack.enter_async_context(self._visibility)
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._stack.__aexit__(*exc_info)

    async def receive(
        self, max_messages: int, *, wait_time_s: float, visibility_timeout_s: int
    ) -> list[QueueMessage]:
        start_ns = trace_context.now_ns()
        messages = await receive(
            self._client,
            self.queue_url,
            max_messages=max_messages,
            wait_time_s=wait_time_s,
            visibility_timeout_s=visibility_timeout_s,
            message_attributes=True,
        )
        trace_context.received(messages, self.queue_url, start_ns=start_ns)
        return messages

    async def delete(self, message: QueueMessage) -> None:
        await self._deletes.submit(message)

    async def change_visibility(self, message: QueueMessage, timeout_s: int) -> None:
        await self._visibility.submit((message, timeout_s))

    async def send_copy(self, message: QueueMessage, attributes: Mapping[str, str]) -> None:
        """Send a copy of `message` (same body and FIFO group, a fresh deduplication id) with
        `attributes` (String message attributes) replacing those of the same name."""
        copy = OutgoingMessage(
            body=message.body,
            attributes={**message.attributes, **string_attributes(attributes)},
            group_id=message.group_id,
            dedup_id=None if message.group_id is None else f"{message.message_id}-copy",
        )
        (result,) = await send_batch(self._client, self.queue_url, [copy])
        if result.error is not None:
            raise result.error

    async def max_receive_count(self) -> int | None:
        policy = await redrive_policy(self._client, self.queue_url)
        return None if policy is None else policy.max_receive_count

    async def _delete_batch(self, messages: list[QueueMessage]) -> Sequence[BaseException | None]:
        try:
            return await delete_batch(self._client, self.queue_url, messages)
        except ClientError as exc:
            return [QueueError(f"DeleteMessageBatch failed: {exc}")] * len(messages)

    async def _visibility_batch(
        self, changes: list[tuple[QueueMessage, int]]
    ) -> Sequence[BaseException | None]:
        try:
            return await change_visibility_batch(self._client, self.queue_url, changes)
        except ClientError as exc:
            return [QueueError(f"ChangeMessageVisibilityBatch failed: {exc}")] * len(changes)
