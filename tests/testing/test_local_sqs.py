"""The embedded SQS server is a test peer: it must stay correct under concurrent requests."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from orchestrator.testing.local_sqs import LocalSqsServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def sqs(sqs_server: LocalSqsServer) -> Any:
    return boto3.client(
        "sqs",
        region_name="us-east-1",
        endpoint_url=sqs_server.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def test_concurrent_sends_receives_and_deletes_lose_and_duplicate_nothing(sqs: Any) -> None:
    queue = sqs.create_queue(QueueName=f"hammer-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    bodies = [f"m-{i}" for i in range(400)]
    deleted: Counter[str] = Counter()
    lock = threading.Lock()

    def send(chunk: list[str]) -> None:
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)]
        assert not sqs.send_message_batch(QueueUrl=queue, Entries=entries).get("Failed")

    def consume() -> None:
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 3:
            got = sqs.receive_message(
                QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=60
            ).get("Messages", [])
            if not got:
                continue
            idle_since = time.monotonic()
            # Touch visibility too: every kind of call the worker makes runs concurrently.
            sqs.change_message_visibility_batch(
                QueueUrl=queue,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 60}
                    for i, m in enumerate(got)
                ],
            )
            answer = sqs.delete_message_batch(
                QueueUrl=queue,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )
            assert not answer.get("Failed")
            with lock:
                deleted.update(m["Body"] for m in got)

    with ThreadPoolExecutor(max_workers=12) as pool:
        consumers = [pool.submit(consume) for _ in range(6)]
        senders = [pool.submit(send, bodies[i : i + 10]) for i in range(0, len(bodies), 10)]
        for future in senders + consumers:
            future.result()

    assert sorted(deleted) == sorted(bodies)
    assert set(deleted.values()) == {1}


def test_a_long_poll_returns_as_soon_as_a_message_arrives_without_blocking_others(
    sqs: Any,
) -> None:
    queue = sqs.create_queue(QueueName=f"poll-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    answer: dict[str, Any] = {}

    def poll() -> None:
        answer.update(sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=20))

    poller = threading.Thread(target=poll)
    poller.start()
    # While the long poll waits, other requests are served (moto's lock is not held by it).
    sqs.send_message(QueueUrl=queue, MessageBody="wake up")
    poller.join(timeout=15)

    assert not poller.is_alive(), "the long poll did not return when a message arrived"
    assert [m["Body"] for m in answer["Messages"]] == ["wake up"]
