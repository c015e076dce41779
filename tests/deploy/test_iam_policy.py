"""deploy/iam-policy.json grants exactly the AWS calls a real worker makes, on their resources.

A real worker runs end to end against the Connect emulator and moto (SQS, SNS, EventBridge) with
every sink configured, through an aiobotocore session whose event system records each call just
before it is sent (`before-call`) together with its parameters (`before-parameter-build`). Each
recorded call becomes the IAM action and resource ARNs AWS authorizes it against, and the policy,
with its placeholders filled in for this run, must allow every one of them and grant nothing else.
"""

from __future__ import annotations

import fnmatch
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.session import AioSession, get_session

from orchestrator.daemon.assembly import open_worker
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.conftest import FLOW_ID, INSTANCE_ID, REGION
from tests.deploy._support import IAM_POLICY
from tests.support import create_queue_with_dlq, queue_counts, request_body, send_all, settings_for

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(60)

#: moto's account.
ACCOUNT = "123456789012"
VISIBILITY_TIMEOUT_S = 4
#: The lifecycle outlives half the visibility timeout, so the heartbeat must extend its message.
AGENT_DELAY_S = 3.5

#: API operation -> the IAM action that authorizes it (batch calls use the single-entry action).
IAM_ACTIONS = {
    ("sqs", "ReceiveMessage"): "sqs:ReceiveMessage",
    ("sqs", "GetQueueAttributes"): "sqs:GetQueueAttributes",
    ("sqs", "DeleteMessage"): "sqs:DeleteMessage",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "ChangeMessageVisibility"): "sqs:ChangeMessageVisibility",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
    ("sqs", "SendMessage"): "sqs:SendMessage",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sns", "Publish"): "sns:Publish",
    ("sns", "PublishBatch"): "sns:Publish",
    ("events", "PutEvents"): "events:PutEvents",
    ("connect", "StartWebRTCContact"): "connect:StartWebRTCContact",
    ("connect", "DescribeContact"): "connect:DescribeContact",
    ("connect", "StartScreenSharing"): "connect:StartScreenSharing",
}


@dataclass(frozen=True)
class Call:
    service: str  # the signing name, which is the IAM service prefix for these four services
    operation: str
    params: dict[str, Any]

    @property
    def action(self) -> str:
        key = (self.service, self.operation)
        assert key in IAM_ACTIONS, f"the worker makes a call the policy knows nothing of: {key}"
        return IAM_ACTIONS[key]

    def resources(self) -> list[str]:
        """The ARNs AWS authorizes this call against (Service Authorization Reference)."""
        p = self.params
        connect = f"arn:aws:connect:{REGION}:{ACCOUNT}:instance/{p.get('InstanceId')}"
        match self.service:
            case "sqs":
                return [f"arn:aws:sqs:{REGION}:{ACCOUNT}:{p['QueueUrl'].rsplit('/', 1)[-1]}"]
            case "sns":
                return [p["TopicArn"]]
            case "events":
                buses = {e["EventBusName"] for e in p["Entries"]}
                return [f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus}" for bus in buses]
            case "connect" if self.operation == "StartWebRTCContact":
                return [f"{connect}/contact-flow/{p['ContactFlowId']}"]
            case "connect" if self.operation == "DescribeContact":
                return [f"{connect}/contact/{p['ContactId']}"]
            case "connect" if self.operation == "StartScreenSharing":
                return [f"{connect}/contact/{p['ContactId']}", connect]
        raise AssertionError(f"no resource mapping for {self.service}:{self.operation}")


class Recorder:
    """Records every call a session's clients send, with the parameters they were given."""

    def __init__(self, session: AioSession) -> None:
        self.calls: list[Call] = []
        session.register("before-parameter-build", self._params)
        session.register("before-call", self._call)

    def _params(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["deploy_test_params"] = json.loads(json.dumps(params, default=str))

    def _call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        params = context.get("deploy_test_params", {})
        self.calls.append(Call(model.service_model.signing_name, model.name, params))


def policy_statements() -> list[dict[str, Any]]:
    policy = json.loads(IAM_POLICY.read_text())
    assert policy["Version"] == "2012-10-17"
    statements: list[dict[str, Any]] = policy["Statement"]
    for statement in statements:
        assert statement["Effect"] == "Allow"
        assert set(statement) == {"Sid", "Effect", "Action", "Resource"}
    return statements


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def policy_actions() -> set[str]:
    return {action for s in policy_statements() for action in as_list(s["Action"])}


def allowed(action: str, arn: str, placeholders: dict[str, str]) -> bool:
    for statement in policy_statements():
        if action not in as_list(statement["Action"]):
            continue
        for resource in as_list(statement["Resource"]):
            pattern = resource
            for placeholder, value in placeholders.items():
                pattern = pattern.replace(placeholder, value)
            if fnmatch.fnmatchcase(arn, pattern):
                return True
    return False


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
    emulator = await start_emulator(
        agent_delay_s=(AGENT_DELAY_S, AGENT_DELAY_S),
        instance_ids=frozenset({INSTANCE_ID}),
        contact_flow_ids=frozenset({FLOW_ID}),
    )
    suffix = uuid.uuid4().hex[:8]
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
    await send_all(sqs_client, queue, [request_body("shares-screen"), invalid])

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
    )
    session = AioSession()
    recorder = Recorder(session)
    async with open_worker(settings, session=session) as worker:
        await worker.run(drain=True)

    # The run did what it should: one contact through screen sharing, the invalid message in the
    # DLQ after its deliveries, events on the queue sink.
    assert worker.metrics.value("orchestrator_messages_acknowledged_total") == 1
    assert await queue_counts(sqs_client, dlq) == (1, 0)
    assert (await queue_counts(sqs_client, events_queue))[0] >= 5

    calls = recorder.calls
    operations = sorted({(c.service, c.operation) for c in calls})
    assert operations == sorted(
        [
            ("connect", "DescribeContact"),
            ("connect", "StartScreenSharing"),
            ("connect", "StartWebRTCContact"),
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
        "EVENTS_TOPIC_NAME": topic.rsplit(":", 1)[-1],
        "EVENT_BUS_NAME": f"events-{suffix}",
        "CONTACT_FLOW_ID": FLOW_ID,
        "INSTANCE_ID": INSTANCE_ID,
    }
    for call in calls:
        for arn in call.resources():
            assert allowed(call.action, arn, placeholders), (call.action, arn)
    # ...and only on its own resource: the events queue cannot be consumed, nor requests sent.
    events_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{placeholders['EVENTS_QUEUE_NAME']}"
    request_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{placeholders['REQUEST_QUEUE_NAME']}"
    assert not allowed("sqs:ReceiveMessage", events_arn, placeholders)
    assert not allowed("sqs:SendMessage", request_arn, placeholders)

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
