"""The client at the wire, with the local SQS server and no worker: the test writes the replies a
worker would (a test double at the network boundary) and reads what the client sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from orchestrator.client import (
    CREATED_AT_TAG,
    RETENTION_S,
    ROLE,
    ROLE_TAG,
    CallClient,
    CallTimeout,
    EventType,
    stale_reply_queues,
)
from orchestrator.sqs import queue_arn, receive
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.queues import create_queue
from orchestrator.testing.requests import REGION, request_document
from orchestrator.testing.waiting import eventually

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(60)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def event(request_id: str, type_: str, *, final: bool = False, **data: Any) -> str:
    return json.dumps(
        {
            "id": f"{request_id}:{type_}",
            "type": type_,
            "time": "2026-01-01T12:00:00.000Z",
            "request_id": request_id,
            "contact_id": "contact-1" if type_ != EventType.RECEIVED else None,
            "instance_id": "instance-1",
            "final": final,
            "data": data,
        }
    )


@pytest.fixture
async def client(sqs_server: LocalSqsServer, sqs_client: SQSClient, clock: Clock) -> CallClient:
    """A client on a fresh request queue; each test enters it itself (its task group lives in
    the test's task)."""
    queue = await create_queue(sqs_client, "requests")
    return CallClient(queue, region=REGION, endpoint_url=sqs_server.url, wait_time_s=1, clock=clock)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def reply(sqs: SQSClient, client: CallClient, *bodies: str) -> None:
    assert client.reply_queue_url is not None
    for body in bodies:
        await sqs.send_message(QueueUrl=client.reply_queue_url, MessageBody=body)


async def requests_sent(sqs: SQSClient, client: CallClient) -> list[dict[str, Any]]:
    return [json.loads(m.body) for m in await receive(sqs, client.queue_url, wait_time_s=1)]


async def test_each_stage_that_does_not_arrive_raises_call_timeout_naming_it(
    client: CallClient, sqs_client: SQSClient
) -> None:
    async with client:
        call = await client.submit(request_document("slow"))
        stage = r"contact\.started did not arrive within 0\.3 s; no event yet"
        with pytest.raises(CallTimeout, match=stage) as t:
            await call.started(timeout=0.3)
        assert (t.value.stage, t.value.request_id) == (EventType.STARTED, "slow")
        assert isinstance(t.value, TimeoutError)

        await reply(sqs_client, client, event("slow", EventType.STARTED, ContactId="contact-1"))
        started = await call.started(timeout=10)
        assert started.data == {"ContactId": "contact-1"}
        stage = r"final event did not arrive within 0\.3 s; last event contact\.started"
        with pytest.raises(CallTimeout, match=stage) as t:
            await call.outcome(timeout=0.3)
        assert t.value.last_event_type == EventType.STARTED


async def test_events_are_routed_by_request_id_deduplicated_and_end_after_the_final_one(
    client: CallClient, sqs_client: SQSClient
) -> None:
    async with client:
        mine = await client.submit(request_document("mine"))
        theirs = await client.submit(request_document("theirs"))
        await reply(
            sqs_client,
            client,
            event("mine", EventType.RECEIVED),
            event("theirs", EventType.RECEIVED),
            event("mine", EventType.RECEIVED),  # at-least-once: a duplicate
            event("mine", "contact.queue_position", position=3),  # a type this client may not know
            event("mine", EventType.DISCONNECTED, final=True, reason="CUSTOMER_DISCONNECT"),
        )
        seen = [e async for e in mine.events(timeout=10)]
        assert [e.type for e in seen] == [
            EventType.RECEIVED,
            "contact.queue_position",
            EventType.DISCONNECTED,
        ]
        assert seen[1].known_type is None or seen[1].known_type == "contact.queue_position"
        assert seen[1].data == {"position": 3}
        assert mine.status == EventType.DISCONNECTED and mine.contact_id == "contact-1"
        assert [e.type for e in theirs.history] == [EventType.RECEIVED]


async def test_a_reply_for_no_handle_is_kept_a_while_then_dropped_and_counted(
    client: CallClient, sqs_client: SQSClient, clock: Clock
) -> None:
    async with client:
        await reply(sqs_client, client, event("early", EventType.RECEIVED))
        await reply(sqs_client, client, event("forgotten", EventType.RECEIVED))
        # Kept: a handle made later gets it at once.
        await eventually(
            lambda: {"early", "forgotten"} <= set(client._orphans),
            message="both replies kept",
        )
        assert [e.type for e in client.call("early").history] == [EventType.RECEIVED]
        # Past the time to keep it, the next reply sweeps it away, counted.
        clock.now += 61
        await reply(sqs_client, client, event("later", EventType.RECEIVED))
        await eventually(lambda: client.dropped == 1, message="the forgotten reply dropped")
        assert client.call("forgotten").history == []
        await reply(sqs_client, client, "not json")
        await eventually(lambda: client.dropped == 2, message="a body that is no event dropped")


async def test_cancel_sends_the_documented_cancel_request(
    client: CallClient, sqs_client: SQSClient
) -> None:
    async with client:
        call = await client.submit(request_document("to-cancel"))
        [submitted] = await requests_sent(sqs_client, client)
        assert submitted["RequestId"] == "to-cancel"
        assert submitted["ReplyTo"] == client.reply_queue_url

        await call.cancel()
        assert await requests_sent(sqs_client, client) == [
            {"Action": "cancel", "RequestId": "to-cancel"}
        ]
        # Once the contact is known, the cancel names it, and its instance, too.
        await reply(sqs_client, client, event("to-cancel", EventType.STARTED))
        await call.started(timeout=10)
        await call.cancel()
        assert await requests_sent(sqs_client, client) == [
            {
                "Action": "cancel",
                "RequestId": "to-cancel",
                "ContactId": "contact-1",
                "InstanceId": "instance-1",
            }
        ]


async def test_the_reply_queue_is_tagged_short_lived_and_deleted_on_close(
    sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    requests = await create_queue(sqs_client, "requests")
    role = "arn:aws:iam::123456789012:role/contact-orchestrator"
    async with CallClient(
        requests,
        region=REGION,
        endpoint_url=sqs_server.url,
        wait_time_s=1,
        reply_queue_prefix="shop-replies",
        orchestrator_role_arn=role,
    ) as client:
        url = client.reply_queue_url
        assert url is not None and url.rsplit("/", 1)[1].startswith("shop-replies-")
        tags = (await sqs_client.list_queue_tags(QueueUrl=url))["Tags"]
        assert tags[ROLE_TAG] == ROLE
        created = datetime.fromisoformat(tags[CREATED_AT_TAG])
        assert abs(created - datetime.now(UTC)) < timedelta(minutes=5)
        attributes = (await sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))[
            "Attributes"
        ]
        assert attributes["MessageRetentionPeriod"] == str(RETENTION_S)
        [statement] = json.loads(attributes["Policy"])["Statement"]
        assert statement["Principal"] == {"AWS": role}
        assert statement["Action"] == "sqs:SendMessage"
        assert statement["Resource"] == await queue_arn(sqs_client, url)
    listed = (await sqs_client.list_queues(QueueNamePrefix="shop-replies-")).get("QueueUrls", [])
    assert url not in listed


async def test_a_given_reply_queue_is_used_and_never_deleted(
    sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    requests = await create_queue(sqs_client, "requests")
    mine = await create_queue(sqs_client, "orchestrator-replies-fixed")
    async with CallClient(
        requests, region=REGION, endpoint_url=sqs_server.url, reply_queue_url=mine, wait_time_s=1
    ) as client:
        assert client.prepare(request_document("r"))["ReplyTo"] == mine
    assert (await sqs_client.get_queue_attributes(QueueUrl=mine))["ResponseMetadata"]


async def test_stale_reply_queues_are_found_by_their_tags_and_age(
    sqs_client: SQSClient,
) -> None:
    prefix = "stale-test"
    old = datetime(2026, 1, 1, tzinfo=UTC)
    tagged = await sqs_client.create_queue(
        QueueName=f"{prefix}-old", tags={ROLE_TAG: ROLE, CREATED_AT_TAG: "2026-01-01T00:00:00Z"}
    )
    await sqs_client.create_queue(
        QueueName=f"{prefix}-young", tags={ROLE_TAG: ROLE, CREATED_AT_TAG: "2026-01-01T00:50:00Z"}
    )
    await sqs_client.create_queue(QueueName=f"{prefix}-untagged")
    now = old + timedelta(hours=1)
    stale = await stale_reply_queues(sqs_client, prefix=prefix, older_than_s=1800, now=now)
    assert stale == [tagged["QueueUrl"]]


@pytest.mark.parametrize("wrong", ["with space", "x" * 70])
async def test_a_prefix_sqs_would_refuse_fails_before_any_call(
    sqs_server: LocalSqsServer, wrong: str
) -> None:
    client = CallClient(
        "http://127.0.0.1:1/123456789012/q",
        region=REGION,
        endpoint_url=sqs_server.url,
        reply_queue_prefix=wrong,
    )
    with pytest.raises(ValueError, match="reply queue prefix"):
        await client.__aenter__()
