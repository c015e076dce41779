"""deploy/iam-policy.json grants exactly the AWS calls a real worker makes, on their resources.

A real worker runs end to end against the Connect emulator and moto (SQS, SNS, EventBridge) with
every sink configured, through an aiobotocore session whose event system records each call just
before it is sent (`before-call`) together with its parameters (`before-parameter-build`). Each
recorded call becomes the IAM action and resource ARNs AWS authorizes it against, and the policy,
with its placeholders filled in for this run, must allow every one of them and grant nothing else.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.session import AioSession, get_session

from orchestrator.daemon.assembly import open_worker
from orchestrator.engine.request import parse_request
from orchestrator.testing.emulator import EmulatorControl
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.requests import cancel_body
from tests.conftest import FLOW_ID, INSTANCE_ID, REGION
from tests.deploy._support import IAM_ACTIONS, IAM_POLICY, Recorder, as_list, statements_allow
from tests.support import create_queue_with_dlq, queue_counts, request_body, send_all, settings_for

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(60)

#: moto's account.
ACCOUNT = "123456789012"
VISIBILITY_TIMEOUT_S = 4
#: The lifecycle outlives half the visibility timeout, so the heartbeat must extend its message.
AGENT_DELAY_S = 3.5


def policy_statements() -> list[dict[str, Any]]:
    policy = json.loads(IAM_POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    statements: list[dict[str, Any]] = policy["Statement"]
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert set(statement) == {"Sid", "Effect", "Action", "Resource"}
    return statements


def policy_actions() -> set[str]:
    return {action for s in policy_statements() for action in as_list(s["Action"])}


def allowed(action: str, arn: str, placeholders: dict[str, str]) -> bool:
    return statements_allow(policy_statements(), action, arn, placeholders)


def test_policy_is_least_privilege_in_form() -> None:
    for statement in policy_statements():
        for action in as_list(statement["Action"]):
            service, _, name = action.partition(":")
            assert service and name and "*" not in action and "?" not in action, action
        for resource in as_list(statement["Resource"]):
            assert resource.startswith("arn:aws:"), resource
            assert ":*" not in resource and resource != "*", resource
    assert policy_actions() == set(IAM_ACTIONS.values())


async def test_policy_allows_every_call_a_worker_makes_and_nothing_more(
    start_emulator: Any, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    suffix = uuid.uuid4().hex[:8]
    # Connect's contact events reach the worker through their own queue (the emulator publishes
    # what an EventBridge rule would deliver).
    contact_events = (await sqs_client.create_queue(QueueName=f"contact-events-{suffix}"))[
        "QueueUrl"
    ]
    emulator = await start_emulator(
        agent_delay_s=(AGENT_DELAY_S, AGENT_DELAY_S),
        instance_ids=frozenset({INSTANCE_ID}),
        contact_flow_ids=frozenset({FLOW_ID}),
        events_queue_url=contact_events,
        events_endpoint_url=sqs_server.url,
    )
    queue, dlq = await create_queue_with_dlq(sqs_client)
    events_queue = (await sqs_client.create_queue(QueueName=f"events-{suffix}"))["QueueUrl"]
    setup = get_session()
    async with setup.create_client("sns", region_name=REGION, endpoint_url=sqs_server.url) as sns:
        topic = (await sns.create_topic(Name=f"events-{suffix}"))["TopicArn"]
    async with setup.create_client(
        "events", region_name=REGION, endpoint_url=sqs_server.url
    ) as eventbridge:
        await eventbridge.create_event_bus(Name=f"events-{suffix}")
    invalid = json.dumps({"RequestId": "invalid", "ParticipantDetails": {"DisplayName": ""}})
    # A contact this worker does not hold, cancelled by its ContactId: the worker stops it.
    async with setup.create_client(
        "connect", region_name=REGION, endpoint_url=emulator.url
    ) as connect:
        params = parse_request(request_body("elsewhere")).start_webrtc_contact_params("t-1")
        elsewhere = (await connect.start_web_rtc_contact(**params))["ContactId"]
    await EmulatorControl(emulator.url).hold(elsewhere)  # no agent before the cancel
    cancel = cancel_body("elsewhere", elsewhere)
    await send_all(sqs_client, queue, [request_body("shares-screen"), invalid, cancel])

    settings = settings_for(
        emulator.url,
        sqs_server.url,
        queue,
        queue={"visibility_timeout_s": VISIBILITY_TIMEOUT_S},
        events={
            "sqs_queue_url": events_queue,
            "sns_topic_arn": topic,
            "eventbridge_bus": f"events-{suffix}",
        },
        contact_events={"queue_url": contact_events},
    )
    session = AioSession()
    recorder = Recorder(session)
    async with open_worker(settings, session=session) as worker:
        await worker.run(drain=True)

    # The run did what it should: one contact through screen sharing, one stopped for a cancel,
    # the invalid message in the DLQ after its deliveries, events on the queue sink.
    assert worker.metrics.value("orchestrator_messages_acknowledged_total") == 2
    assert worker.metrics.value("orchestrator_cancels_total", {"result": "cancelled"}) == 1
    assert await queue_counts(sqs_client, dlq) == (1, 0)
    assert (await queue_counts(sqs_client, events_queue))[0] >= 5

    calls = recorder.calls
    operations = sorted({(c.service, c.operation) for c in calls})
    assert operations == sorted(
        [
            ("connect", "DescribeContact"),
            ("connect", "GetContactMetrics"),
            ("connect", "StartScreenSharing"),
            ("connect", "StartWebRTCContact"),
            ("connect", "StopContact"),
            ("events", "PutEvents"),
            ("sns", "PublishBatch"),
            ("sqs", "ChangeMessageVisibilityBatch"),
            ("sqs", "DeleteMessageBatch"),
            ("sqs", "GetQueueAttributes"),
            ("sqs", "ReceiveMessage"),
            ("sqs", "SendMessageBatch"),
        ]
    )
    assert {c.action for c in calls} == policy_actions()

    placeholders = {
        "REGION": REGION,
        "ACCOUNT_ID": ACCOUNT,
        "REQUEST_QUEUE_NAME": queue.rsplit("/", 1)[-1],
        "EVENTS_QUEUE_NAME": events_queue.rsplit("/", 1)[-1],
        "CONTACT_EVENTS_QUEUE_NAME": contact_events.rsplit("/", 1)[-1],
        "EVENTS_TOPIC_NAME": topic.rsplit(":", 1)[-1],
        "EVENT_BUS_NAME": f"events-{suffix}",
        "CONTACT_FLOW_ID": FLOW_ID,
        "INSTANCE_ID": INSTANCE_ID,
    }
    for call in calls:
        for arn in call.resources(REGION, ACCOUNT):
            assert allowed(call.action, arn, placeholders), (call.action, arn)
    # ...and only on its own resource: the events queue cannot be consumed, nor requests sent.
    events_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{placeholders['EVENTS_QUEUE_NAME']}"
    request_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{placeholders['REQUEST_QUEUE_NAME']}"
    assert not allowed("sqs:ReceiveMessage", events_arn, placeholders)
    assert not allowed("sqs:SendMessage", request_arn, placeholders)
    # The contact-events queue is read and emptied, never written (EventBridge writes it).
    contact_events_arn = (
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:{placeholders['CONTACT_EVENTS_QUEUE_NAME']}"
    )
    assert allowed("sqs:ReceiveMessage", contact_events_arn, placeholders)
    assert allowed("sqs:DeleteMessage", contact_events_arn, placeholders)
    assert not allowed("sqs:SendMessage", contact_events_arn, placeholders)

    # sqs:ChangeMessageVisibility covers both paths that change visibility: the hand-back of the
    # invalid message (visibility 0) and the heartbeat that kept the long lifecycle's message
    # hidden (the visibility timeout again).
    timeouts = {
        entry["VisibilityTimeout"]
        for call in calls
        if call.operation == "ChangeMessageVisibilityBatch"
        for entry in call.params["Entries"]
    }
    assert 0 in timeouts, "the invalid message was handed back"
    assert VISIBILITY_TIMEOUT_S in timeouts, "the heartbeat extended the long lifecycle"
