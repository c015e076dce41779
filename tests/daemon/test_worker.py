"""The worker end to end: real SQS server, real emulator, real worker, drain mode."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from aiobotocore.session import get_session

from orchestrator.daemon.assembly import open_worker
from orchestrator.engine.events import EventType
from orchestrator.engine.request import client_token
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.conftest import INSTANCE_ID, REGION
from tests.daemon.conftest import DrainedWorker, final_events
from tests.support import (
    create_queue_with_dlq,
    drain_bodies,
    eventually,
    queue_counts,
    request_body,
    send_all,
    settings_for,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(90)


finals = final_events


async def test_worker_completes_every_request_and_empties_the_queue(
    drained_worker: DrainedWorker,
) -> None:
    run = await drained_worker([request_body(f"ok-{i}") for i in range(6)])

    assert run.finals() == {f"ok-{i}": EventType.SCREEN_SHARING_STARTED for i in range(6)}
    assert await run.left() == ((0, 0), (0, 0))
    assert run.worker.metrics.value("orchestrator_messages_acknowledged_total") == 6
    kinds = [e.type for e in run.sink.events if e.request_id == "ok-0"]
    assert kinds == [
        EventType.RECEIVED,
        EventType.STARTED,
        EventType.AGENT_CONNECTED,
        EventType.SCREEN_SHARING_STARTED,
    ]


async def test_mixed_outcomes_each_get_their_own_final_event(
    start_emulator: Any, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    emulator: Emulator = await start_emulator(
        agent_delay_s=(1.0, 1.5), instance_ids=frozenset({INSTANCE_ID})
    )
    queue, _ = await create_queue_with_dlq(sqs_client)
    no_share = {"Customer": {"Video": "SEND"}, "Agent": {"Video": "SEND", "ScreenShare": "SEND"}}
    await send_all(
        sqs_client,
        queue,
        [
            request_body("shares"),
            request_body("declines", ScreenSharing=False),
            request_body("no-capability", AllowedCapabilities=no_share),
            request_body("hangs-up"),
            request_body("wrong-instance", InstanceId="no-such-instance"),
        ],
    )
    sink = MemorySink()
    settings = settings_for(emulator.url, sqs_server.url, queue)

    control = EmulatorControl(emulator.url)

    async def customer_hangs_up() -> None:
        token = client_token("hangs-up", "start")

        async def started() -> bool:
            return any(c["ClientToken"] == token for c in await control.contacts())

        await eventually(started, message="the hang-up contact to start")
        contact = next(c for c in await control.contacts() if c["ClientToken"] == token)
        await control.disconnect(contact["ContactId"])

    async with open_worker(settings, extra_sinks=[sink]) as worker, anyio.create_task_group() as tg:
        tg.start_soon(customer_hangs_up)
        await worker.run(drain=True)

    assert finals(sink) == {
        "shares": EventType.SCREEN_SHARING_STARTED,
        "declines": EventType.SCREEN_SHARING_SKIPPED,
        "no-capability": EventType.SCREEN_SHARING_SKIPPED,
        "hangs-up": EventType.DISCONNECTED,
        "wrong-instance": EventType.FAILED,
    }
    reasons = {
        e.request_id: e.data.get("reason") or e.data.get("error_code")
        for e in sink.events
        if e.final
    }
    assert reasons["declines"] == "not_requested"
    assert reasons["no-capability"] == "capability_not_allowed"
    assert reasons["wrong-instance"] == "ResourceNotFoundException"


async def test_malformed_and_oversize_messages_land_in_the_dlq_without_blocking_good_ones(
    drained_worker: DrainedWorker, sqs_client: SQSClient
) -> None:
    oversize_attributes = {f"k{i}": "x" * 1_000 for i in range(40)}  # 40 KB in total
    bad = [
        "this is not json",
        "[1, 2, 3]",
        json.dumps({"RequestId": "bad-name", "ParticipantDetails": {"DisplayName": "x" * 300}}),
        request_body("bad-attrs", Attributes=oversize_attributes),
        request_body("near-limit", Padding="p" * 250_000),
    ]
    good = [request_body(f"good-{i}") for i in range(4)]
    interleaved = [m for pair in zip(bad, [*good, ""], strict=True) for m in pair if m]
    run = await drained_worker(interleaved, max_receive_count=2)
    sink, queue, dlq = run.sink, run.queue, run.dlq

    outcome = run.finals()
    assert {rid: outcome[rid] for rid in (f"good-{i}" for i in range(4))} == {
        f"good-{i}": EventType.SCREEN_SHARING_STARTED for i in range(4)
    }
    for rid in ("bad-name", "bad-attrs", "near-limit"):
        assert outcome[rid] is EventType.REJECTED
    rejected = {e.request_id: e.data["errors"] for e in sink.events if e.type is EventType.REJECTED}
    assert any(err["field"] == "ParticipantDetails.DisplayName" for err in rejected["bad-name"])
    assert any(err["field"] == "Attributes" for err in rejected["bad-attrs"])
    assert any(err["field"] == "Padding" for err in rejected["near-limit"])

    # Rejected messages went straight back to the queue each time; on the receive after their
    # last attempt the queue's redrive policy moved them to the DLQ.
    assert await queue_counts(sqs_client, dlq) == (len(bad), 0)
    assert sorted(await drain_bodies(sqs_client, dlq)) == sorted(bad)
    assert await queue_counts(sqs_client, queue) == (0, 0)


async def test_a_poison_message_is_rejected_on_its_first_and_last_receive_under_one_id(
    drained_worker: DrainedWorker, sqs_client: SQSClient
) -> None:
    poison = json.dumps({"RequestId": "poison-1", "ParticipantDetails": {"DisplayName": ""}})
    run = await drained_worker([poison, request_body("fine-1")], max_receive_count=5)

    # Not once per receive; twice, so that a worker that died before its sinks had the first
    # loses nothing. One event id: a consumer keeps one.
    rejections = [e for e in run.sink.events if e.type is EventType.REJECTED]
    assert [e.id for e in rejections] == ["poison-1:request.rejected"] * 2
    assert run.finals() == {
        "poison-1": EventType.REJECTED,
        "fine-1": EventType.SCREEN_SHARING_STARTED,
    }
    # Received five times (handed back at once each time), then dead-lettered as before.
    handed_back = {"reason": "rejected"}
    assert run.worker.metrics.value("orchestrator_messages_handed_back_total", handed_back) == 5
    assert await drain_bodies(sqs_client, run.dlq) == [poison]


async def test_sns_wrapped_requests_are_processed(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    queue_arn = (
        await sqs_client.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    )["Attributes"]["QueueArn"]
    async with get_session().create_client(
        "sns", region_name=REGION, endpoint_url=sqs_server.url
    ) as sns:
        topic = (await sns.create_topic(Name=f"calls-{uuid.uuid4().hex[:8]}"))["TopicArn"]
        await sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        await sns.publish(TopicArn=topic, Message=request_body("via-sns"))
    raw = await sqs_client.receive_message(QueueUrl=queue, VisibilityTimeout=0)
    envelope = json.loads(raw["Messages"][0]["Body"])
    assert envelope["Type"] == "Notification"  # the worker really sees the SNS envelope

    sink = MemorySink()
    async with open_worker(
        settings_for(emulator.url, sqs_server.url, queue), extra_sinks=[sink]
    ) as worker:
        await worker.run(drain=True)
    assert finals(sink) == {"via-sns": EventType.SCREEN_SHARING_STARTED}


async def test_fifo_queue_requests_are_processed(drained_worker: DrainedWorker) -> None:
    run = await drained_worker([request_body(f"fifo-{i}") for i in range(3)], fifo=True)

    assert set(run.finals()) == {"fifo-0", "fifo-1", "fifo-2"}


async def test_connect_answering_5xx_past_the_retry_budget_ends_nothing_and_spends_no_receive(
    start_emulator: Any, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    """5xx on every call is an outage (`faults.py`): the start waits in place, the message is
    neither handed back nor failed, and the request completes once Connect answers."""
    emulator: Emulator = await start_emulator(error_rate=1.0)
    control = EmulatorControl(emulator.url)
    queue, dlq = await create_queue_with_dlq(sqs_client, max_receive_count=2)
    await send_all(sqs_client, queue, [request_body("always-5xx")])
    sink = MemorySink()
    settings = settings_for(
        emulator.url,
        sqs_server.url,
        queue,
        connect={"retry_max_attempts": 2, "retry_max_time_s": 1, "outage_max_backoff_s": 1},
    )
    async with open_worker(settings, extra_sinks=[sink]) as worker, anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        unreachable = {"reason": "connect_unreachable"}
        await eventually(
            lambda: worker.metrics.value("orchestrator_deployment_faults_total", unreachable) >= 3,
            within=30,
            message="the start held through several pauses",
        )
        assert not worker.readiness.ready
        assert not [e for e in sink.events if e.final]
        await control.patch_config(error_rate=0.0)
        await eventually(
            lambda: any(e.final for e in sink.events), within=30, message="the final event"
        )
        worker.stop()

    assert [e.type for e in sink.events if e.final] == [EventType.SCREEN_SHARING_STARTED]
    assert (
        worker.metrics.value("orchestrator_messages_handed_back_total", {"reason": "transient"})
        == 0
    )
    assert await queue_counts(sqs_client, queue) == (0, 0)
    assert await queue_counts(sqs_client, dlq) == (0, 0)
