"""No valid request lost to dying workers (`renewal.py`): a request on its next-to-last receive
moves to a fresh message and completes; one past the worker's cap is no longer renewed. Real
worker, real SQS server, real emulator; the dying holders are receives nobody settles."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

import pytest
from structlog.testing import capture_logs

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.policy import expiry
from orchestrator.daemon.renewal import (
    ATTEMPTS,
    CAP_FACTOR,
    FIRST_SENT_AT,
    copy_attributes,
    first_sent_at,
    renewal_due,
)
from orchestrator.engine.events import EventType
from orchestrator.engine.request import parse_request
from orchestrator.sinks import MemorySink
from orchestrator.sqs import QueueMessage, string_attributes
from orchestrator.testing.emulator import Emulator, EmulatorControl
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.support import create_queue_with_dlq, queue_counts, request_body, settings_for

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(90)

MAX_RECEIVES = 3


def message(receive_count: int, **attributes: str) -> QueueMessage:
    return QueueMessage(
        "m-1",
        request_body("r-1"),
        "receipt",
        receive_count=receive_count,
        sent_at=1000.0,
        attributes=string_attributes(attributes),
    )


def test_a_request_is_renewed_on_its_next_to_last_receive_until_the_cap() -> None:
    due = [
        renewal_due(message(n), max_receives=MAX_RECEIVES, has_redrive=True)
        for n in range(1, MAX_RECEIVES + 1)
    ]
    assert due == [False, True, True]
    # A first receive is never renewed (with maxReceiveCount 2, the last one is).
    assert not renewal_due(message(1), max_receives=2, has_redrive=True)
    assert renewal_due(message(2), max_receives=2, has_redrive=True)
    # Without a dead-letter queue the queue's count ends nothing: nothing to renew.
    assert not renewal_due(message(2), max_receives=MAX_RECEIVES, has_redrive=False)
    cap = CAP_FACTOR * MAX_RECEIVES
    below = message(2, **{ATTEMPTS: str(cap - 3)})
    at_cap = message(2, **{ATTEMPTS: str(cap - 2)})
    assert renewal_due(below, max_receives=MAX_RECEIVES, has_redrive=True)
    assert not renewal_due(at_cap, max_receives=MAX_RECEIVES, has_redrive=True)


def test_a_copy_carries_the_receives_so_far_and_the_original_sent_time() -> None:
    first = copy_attributes(message(2))
    assert first == {ATTEMPTS: "2", FIRST_SENT_AT: "1000.0"}
    again = message(2, **{ATTEMPTS: "2", FIRST_SENT_AT: "1000.0"})
    assert copy_attributes(again) == {ATTEMPTS: "4", FIRST_SENT_AT: "1000.0"}
    assert first_sent_at(again) == 1000.0
    # A copy may have a contact already: it never expires unstarted.
    request = parse_request(again.body)
    assert expiry(message(1), request, ttl_s=300) is not None
    assert expiry(again, request, ttl_s=300) is None


async def die_holding(sqs_client: SQSClient, queue: str, times: int) -> None:
    """`times` receives that nobody settles, the message visible again at once (a holder
    killed the moment it received)."""
    for _ in range(times):
        got = await sqs_client.receive_message(QueueUrl=queue, VisibilityTimeout=0)
        assert len(got.get("Messages", [])) == 1


async def run_once(
    emulator: Emulator, sqs_server: LocalSqsServer, queue: str
) -> tuple[MemorySink, list[MutableMapping[str, Any]], float]:
    sink = MemorySink()
    settings = settings_for(emulator.url, sqs_server.url, queue)
    with capture_logs() as logs:
        async with open_worker(settings, extra_sinks=[sink]) as worker:
            await worker.run(drain=True)
    return sink, logs, worker.metrics.value("orchestrator_messages_renewed_total")


async def test_a_request_on_its_next_to_last_receive_is_renewed_and_completes_once(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, dlq = await create_queue_with_dlq(sqs_client, max_receive_count=MAX_RECEIVES)
    await sqs_client.send_message(QueueUrl=queue, MessageBody=request_body("renewed-1"))
    await die_holding(sqs_client, queue, MAX_RECEIVES - 2)

    sink, logs, renewed = await run_once(emulator, sqs_server, queue)

    assert renewed == 1
    assert [e.type for e in sink.events if e.final] == [EventType.SCREEN_SHARING_STARTED]
    assert len(await EmulatorControl(emulator.url).contacts()) == 1
    assert await queue_counts(sqs_client, queue) == (0, 0)
    assert await queue_counts(sqs_client, dlq) == (0, 0)
    line = next(line for line in logs if line["event"] == "message.renewed")
    assert line["receives_in_all"] == str(MAX_RECEIVES - 1)


async def test_a_request_past_the_cap_is_not_renewed(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client, max_receive_count=MAX_RECEIVES)
    spent = str(CAP_FACTOR * MAX_RECEIVES - 2)
    await sqs_client.send_message(
        QueueUrl=queue,
        MessageBody=request_body("spent-1"),
        MessageAttributes={ATTEMPTS: {"DataType": "String", "StringValue": spent}},
    )
    await die_holding(sqs_client, queue, MAX_RECEIVES - 2)

    sink, logs, renewed = await run_once(emulator, sqs_server, queue)

    assert renewed == 0
    assert [line["event"] for line in logs if line["event"].startswith("message.renew")] == [
        "message.renewals_exhausted"
    ]
    # This receive still ran the request (its workers died before; this one did not).
    assert [e.type for e in sink.events if e.final] == [EventType.SCREEN_SHARING_STARTED]
