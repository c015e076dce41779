"""Helpers shared by the daemon-level tests: queues, requests, waiting for conditions."""

from __future__ import annotations

import inspect
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, overload

import anyio

from orchestrator.daemon.settings import Settings, load_settings
from orchestrator.daemon.source import QueueMessage, QueueSource
from tests.conftest import FLOW_ID, INSTANCE_ID, REGION

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

T = TypeVar("T")


def request_body(request_id: str, **extra: Any) -> str:
    body: dict[str, Any] = {
        "RequestId": request_id,
        "InstanceId": INSTANCE_ID,
        "ContactFlowId": FLOW_ID,
        "ParticipantDetails": {"DisplayName": "Jane"},
        "AllowedCapabilities": {
            "Customer": {"Video": "SEND", "ScreenShare": "SEND"},
            "Agent": {"Video": "SEND", "ScreenShare": "SEND"},
        },
    }
    body.update(extra)
    return json.dumps(body)


@overload
async def eventually(
    predicate: Callable[[], Awaitable[T | None]],
    *,
    within: float = ...,
    interval: float = ...,
    message: str = ...,
) -> T: ...


@overload
async def eventually(
    predicate: Callable[[], T | None],
    *,
    within: float = ...,
    interval: float = ...,
    message: str = ...,
) -> T: ...


async def eventually(
    predicate: Callable[[], Any],
    *,
    within: float = 20.0,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy and return that.

    Fails after `within` seconds, naming `message` and the last answer. This is how tests wait:
    never a fixed sleep.
    """
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {message} ({result!r})")
        await anyio.sleep(interval)


def eventually_sync(
    predicate: Callable[[], T | None], *, within: float = 20.0, interval: float = 0.02
) -> T:
    """`eventually` for synchronous tests."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s (last: {result!r})")
        time.sleep(interval)


async def create_queue_with_dlq(
    sqs: SQSClient, *, max_receive_count: int = 2, fifo: bool = False
) -> tuple[str, str]:
    """A fresh request queue whose redrive policy moves messages to a fresh DLQ."""
    suffix = ".fifo" if fifo else ""
    name = f"req-{uuid.uuid4().hex[:10]}"
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


async def send_all(sqs: SQSClient, queue_url: str, bodies: list[str]) -> None:
    fifo = queue_url.endswith(".fifo")
    for start in range(0, len(bodies), 10):
        entries: list[Any] = []
        for i, body in enumerate(bodies[start : start + 10]):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": body}
            if fifo:
                entry["MessageGroupId"] = f"g-{start + i}"
                entry["MessageDeduplicationId"] = uuid.uuid4().hex
            entries.append(entry)
        response = await sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        assert not response.get("Failed"), response.get("Failed")


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


async def drain_bodies(sqs: SQSClient, queue_url: str) -> list[str]:
    """Every message body currently visible on a queue (received and deleted)."""
    bodies: list[str] = []
    while True:
        got = await sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        messages = got.get("Messages", [])
        if not messages:
            return bodies
        bodies.extend(m.get("Body", "") for m in messages)
        await sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )


def settings_for(emulator_url: str, sqs_url: str, queue_url: str, **sections: Any) -> Settings:
    """Settings for a fast worker against local peers; `sections` patch individual keys."""
    base: dict[str, dict[str, Any]] = {
        "aws": {"region": REGION, "endpoint_url": sqs_url},
        "queue": {
            "url": queue_url,
            "wait_time_s": 1,
            "visibility_timeout_s": 30,
            "retry_base_delay_s": 1,
            "retry_max_delay_s": 2,
        },
        "connect": {
            "endpoint_url": emulator_url,
            "retry_max_attempts": 4,
            "retry_max_time_s": 5,
            "capacity_max_wait_s": 20,
        },
        "watch": {
            "first_delay_s": 0.05,
            "multiplier": 1.5,
            "max_interval_s": 0.25,
            "max_wait_s": 20,
        },
        "shutdown": {"grace_period_s": 5},
        "observability": {"enabled": False},
    }
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
    return load_settings(None, **base)


@dataclass
class RecordingSource:
    """Wraps a real `QueueSource` and records what the worker asks of it, in order."""

    inner: QueueSource
    #: The worker's visibility timeout: a change to it is an extension, anything else a hand-back.
    extension_s: int = 30
    calls: list[tuple[float, str, Any]] = field(default_factory=list)
    outstanding: int = 0
    max_outstanding: int = 0

    async def receive(
        self, max_messages: int, *, wait_time_s: float, visibility_timeout_s: int
    ) -> list[QueueMessage]:
        got = await self.inner.receive(
            max_messages, wait_time_s=wait_time_s, visibility_timeout_s=visibility_timeout_s
        )
        self.calls.append((time.monotonic(), "receive", (max_messages, len(got))))
        self.outstanding += len(got)
        self.max_outstanding = max(self.max_outstanding, self.outstanding)
        return got

    async def delete(self, message: QueueMessage) -> None:
        # The worker lets go of a message when it hands it over for deletion.
        self.outstanding -= 1
        await self.inner.delete(message)
        self.calls.append((time.monotonic(), "delete", message))

    async def change_visibility(self, message: QueueMessage, timeout_s: int) -> None:
        if timeout_s != self.extension_s:  # a hand-back, not a heartbeat extension
            self.outstanding -= 1
        await self.inner.change_visibility(message, timeout_s)
        self.calls.append((time.monotonic(), "visibility", (message, timeout_s)))

    async def max_receive_count(self) -> int | None:
        return await self.inner.max_receive_count()
