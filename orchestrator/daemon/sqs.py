"""`QueueSource` on Amazon SQS (client passed in); deletes and visibility changes are batched."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self

from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from orchestrator.batcher import Batcher
from orchestrator.daemon.source import QueueMessage
from orchestrator.errors import QueueError

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

_SYSTEM_ATTRIBUTES: list[Literal["ApproximateReceiveCount", "MessageGroupId", "SentTimestamp"]] = [
    "ApproximateReceiveCount",
    "MessageGroupId",
    "SentTimestamp",
]


def aws_client_config(max_pool_connections: int = 20) -> AioConfig:
    """Settings of every AWS client but Connect's (SQS, SNS, EventBridge): botocore's standard
    retries (3 attempts) for connection blips, and a read timeout longer than the 20 s long
    poll."""
    return AioConfig(
        retries={"total_max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=40,
        max_pool_connections=max_pool_connections,
    )


def _epoch_ms(value: str | None) -> float | None:
    try:
        return int(value) / 1000.0 if value else None
    except ValueError:
        return None


def _failures(response: dict[str, object]) -> dict[str, QueueError]:
    failed = response.get("Failed") or []
    out: dict[str, QueueError] = {}
    for entry in failed:  # type: ignore[attr-defined]
        out[str(entry["Id"])] = QueueError(f"{entry.get('Code')}: {entry.get('Message', '')}")
    return out


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

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    async def receive(
        self, max_messages: int, *, wait_time_s: float, visibility_timeout_s: int
    ) -> list[QueueMessage]:
        response = await self._client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max(1, min(10, max_messages)),
            WaitTimeSeconds=int(wait_time_s),
            VisibilityTimeout=visibility_timeout_s,
            MessageSystemAttributeNames=_SYSTEM_ATTRIBUTES,
        )
        messages = []
        for raw in response.get("Messages", []):
            attributes = raw.get("Attributes", {})
            messages.append(
                QueueMessage(
                    message_id=raw["MessageId"],
                    body=raw.get("Body", ""),
                    receipt=raw["ReceiptHandle"],
                    receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
                    group_id=attributes.get("MessageGroupId"),
                    sent_at=_epoch_ms(attributes.get("SentTimestamp")),
                )
            )
        return messages

    async def delete(self, message: QueueMessage) -> None:
        await self._deletes.submit(message)

    async def change_visibility(self, message: QueueMessage, timeout_s: int) -> None:
        await self._visibility.submit((message, timeout_s))

    async def max_receive_count(self) -> int | None:
        response = await self._client.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"]
        )
        policy = response.get("Attributes", {}).get("RedrivePolicy")
        if not policy:
            return None
        return int(json.loads(policy)["maxReceiveCount"])

    async def _delete_batch(self, messages: list[QueueMessage]) -> Sequence[BaseException | None]:
        try:
            response = await self._client.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m.receipt} for i, m in enumerate(messages)
                ],
            )
        except ClientError as exc:
            return [QueueError(f"DeleteMessageBatch failed: {exc}")] * len(messages)
        failed = _failures(dict(response))
        return [failed.get(str(i)) for i in range(len(messages))]

    async def _visibility_batch(
        self, changes: list[tuple[QueueMessage, int]]
    ) -> Sequence[BaseException | None]:
        try:
            response = await self._client.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m.receipt, "VisibilityTimeout": timeout}
                    for i, (m, timeout) in enumerate(changes)
                ],
            )
        except ClientError as exc:
            return [QueueError(f"ChangeMessageVisibilityBatch failed: {exc}")] * len(changes)
        failed = _failures(dict(response))
        return [failed.get(str(i)) for i in range(len(changes))]
