"""deploy/cloudformation/contact-orchestrator.yaml: linted, deployed into moto's CloudFormation,
and used by a real worker, whose every AWS call the stack's role allows.

moto builds the stack in server mode (the same threaded server the suite's SQS runs on). moto's
CloudFormation has no AWS::SQS::QueuePolicy nor AWS::CloudWatch::Alarm: it skips them with a
warning, so those two are checked in the template itself.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from aiobotocore.session import AioSession, get_session
from cfnlint.decode import cfn_yaml  # type: ignore[import-untyped]

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.settings import QueueSettings, WatchSettings, load_settings
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.conftest import ACCESS_KEY, FLOW_ID, INSTANCE_ID, REGION, SECRET_KEY
from tests.deploy._support import (
    CLOUDFORMATION,
    IAM_POLICY,
    Recorder,
    as_list,
    setting_of_env,
    statements_allow,
)
from tests.support import eventually_sync, queue_counts, request_body, send_all, settings_for

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = [
    pytest.mark.timeout(90),
    # moto announces (from its server thread) the two resource types it cannot build.
    # (test_stack_deploys_every_resource_moto_supports pins which ones they are).
    pytest.mark.filterwarnings("ignore:Tried to parse .* by moto's CloudFormation:UserWarning"),
]

#: moto's account.
ACCOUNT = "123456789012"
INSTANCE_ARN = f"arn:aws:connect:{REGION}:{ACCOUNT}:instance/{INSTANCE_ID}"
FLOW_ARN = f"{INSTANCE_ARN}/contact-flow/{FLOW_ID}"
OIDC_ISSUER = "oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
OIDC_PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{OIDC_ISSUER}"
#: Resource types moto's CloudFormation skips (tested in the template instead).
NOT_IN_MOTO = {"AWS::SQS::QueuePolicy", "AWS::CloudWatch::Alarm"}
#: The event types the worker acts on (connect-facts.md, "Contact events").
CONTACT_EVENT_TYPES = ["CONNECTED_TO_AGENT", "DISCONNECTED", "QUEUED", "INITIATED"]


def template() -> dict[str, Any]:
    """The template with short tags in their long form (`!Ref X` -> `{"Ref": "X"}`)."""
    loaded: dict[str, Any] = cfn_yaml.load(str(CLOUDFORMATION))
    return loaded


@dataclass(frozen=True)
class Stack:
    name: str
    outputs: dict[str, str]
    #: Output key -> its Description (the variable it fills).
    described: dict[str, str]
    resources: dict[str, tuple[str, str]]  # logical id -> (type, physical id)
    role_name: str


def deploy(url: str, **parameters: str) -> Stack:
    name = f"co-{uuid.uuid4().hex[:8]}"
    cloudformation = boto_client(url, "cloudformation")
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=CLOUDFORMATION.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM"],
    )

    def settled() -> dict[str, Any] | None:
        (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
        return None if stack["StackStatus"].endswith("_IN_PROGRESS") else stack

    stack = eventually_sync(settled, within=30, message="the stack to settle")
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    summaries = cloudformation.list_stack_resources(StackName=name)["StackResourceSummaries"]
    resources = {
        r["LogicalResourceId"]: (r["ResourceType"], r.get("PhysicalResourceId", ""))
        for r in summaries
        if r["LogicalResourceId"]
    }
    return Stack(
        name=name,
        outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        described={o["OutputKey"]: o.get("Description", "") for o in stack.get("Outputs", [])},
        resources=resources,
        role_name=resources["WorkerRole"][1],
    )


#: The reply queues the full stack allows: the client's default prefix.
REPLY_PREFIX = "orchestrator-replies"


def full_parameters(**extra: str) -> dict[str, str]:
    return {
        "ConnectInstanceArn": INSTANCE_ARN,
        "ContactFlowArns": FLOW_ARN,
        "CreateEventsQueue": "true",
        "CreateEventsTopic": "true",
        "CreateEventsBus": "true",
        "WorkerTrust": "eks-irsa",
        "EksOidcProviderArn": OIDC_PROVIDER,
        "ReplyQueueArnPattern": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{REPLY_PREFIX}-*",
        **extra,
    }


@pytest.fixture(scope="module")
def moto() -> Iterator[LocalSqsServer]:
    """A moto server of this module's own (CloudFormation, SQS, SNS, EventBridge, IAM)."""
    with LocalSqsServer() as server:
        yield server


@pytest.fixture(scope="module")
def stack(moto: LocalSqsServer) -> Stack:
    """Every option on: the three sinks, IRSA with the KEDA operator trusted."""
    return deploy(moto.url, **full_parameters())


def boto_client(url: str, service: str) -> Any:
    """A client with the suite's fake credentials (module fixtures run before the autouse one)."""
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def client(moto: LocalSqsServer, service: str) -> Any:
    return boto_client(moto.url, service)


def role_policy(moto: LocalSqsServer, stack: Stack) -> list[dict[str, Any]]:
    iam = client(moto, "iam")
    (policy_name,) = iam.list_role_policies(RoleName=stack.role_name)["PolicyNames"]
    document = iam.get_role_policy(RoleName=stack.role_name, PolicyName=policy_name)[
        "PolicyDocument"
    ]
    if isinstance(document, str):
        # moto stores a stack's inline policy as the repr of the dict it was given.
        document = ast.literal_eval(document)
    # moto keeps a list entry that is `!If [cond, ..., !Ref AWS::NoValue]` as null; AWS drops it.
    statements: list[dict[str, Any]] = [s for s in document["Statement"] if s is not None]
    return statements


def trust_policy(moto: LocalSqsServer, stack: Stack) -> dict[str, Any]:
    document = client(moto, "iam").get_role(RoleName=stack.role_name)["Role"][
        "AssumeRolePolicyDocument"
    ]
    return json.loads(document) if isinstance(document, str) else document  # type: ignore[no-any-return]


def queue_attributes(moto: LocalSqsServer, url: str) -> dict[str, str]:
    attributes: dict[str, str] = client(moto, "sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["All"]
    )["Attributes"]
    return attributes


def env_name_to_output_key(name: str) -> str:
    """ORCHESTRATOR_CONTACT_EVENTS__QUEUE_URL -> OrchestratorContactEventsQueueUrl."""
    return "".join(word.capitalize() for word in re.split(r"_+", name) if word)


# -- the template --------------------------------------------------------------------------------


def test_template_passes_cfn_lint() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    if not cfn_lint.is_file():
        pytest.skip(f"{cfn_lint} is not installed")
    result = subprocess.run(
        [str(cfn_lint), str(CLOUDFORMATION)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_every_queue_is_encrypted_with_sse_sqs_never_the_aws_managed_key() -> None:
    resources = template()["Resources"]
    queues = {k: r for k, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    assert len(queues) == 5
    for name, queue in queues.items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, name
        # EventBridge cannot use alias/aws/sqs; SSE-SQS works for every producer.
        assert "KmsMasterKeyId" not in queue["Properties"], name


def test_contact_events_queue_policy_lets_only_the_rule_send() -> None:
    """moto cannot build AWS::SQS::QueuePolicy: the document is checked as written."""
    resources = template()["Resources"]
    policy = resources["ContactEventsQueuePolicy"]["Properties"]
    assert policy["Queues"] == [
        {"Ref": "ContactEventsQueue"},
        {"Ref": "ContactEventsDeadLetterQueue"},
    ]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["ContactEventsQueue", "Arn"]},
        {"Fn::GetAtt": ["ContactEventsDeadLetterQueue", "Arn"]},
    ]
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["ContactEventsRule", "Arn"]}}
    }


def test_dead_letter_alarm_watches_the_request_dlq() -> None:
    alarm = template()["Resources"]["RequestDeadLetterAlarm"]["Properties"]
    (dimension,) = alarm["Dimensions"]
    assert dimension["Value"] == {"Fn::GetAtt": ["RequestDeadLetterQueue", "QueueName"]}
    assert (alarm["MetricName"], alarm["Threshold"]) == ("ApproximateNumberOfMessagesVisible", 0)


# -- the deployed stack --------------------------------------------------------------------------


def test_stack_deploys_every_resource_moto_supports(stack: Stack) -> None:
    resources = template()["Resources"]
    expected = {k for k, r in resources.items() if r["Type"] not in NOT_IN_MOTO}
    assert set(stack.resources) == expected
    for logical, (kind, _) in stack.resources.items():
        assert kind == resources[logical]["Type"], logical


def test_request_queue_matches_the_worker_defaults(moto: LocalSqsServer, stack: Stack) -> None:
    attributes = queue_attributes(moto, stack.outputs["OrchestratorQueueUrl"])
    defaults = QueueSettings.model_fields
    assert int(attributes["VisibilityTimeout"]) == defaults["visibility_timeout_s"].default
    assert int(attributes["ReceiveMessageWaitTimeSeconds"]) == defaults["wait_time_s"].default
    redrive = json.loads(attributes["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == defaults["max_receive_count"].default == 5
    dlq_url = stack.outputs["RequestDeadLetterQueueUrl"]
    assert redrive["deadLetterTargetArn"] == queue_attributes(moto, dlq_url)["QueueArn"]
    for logical, (kind, url) in stack.resources.items():
        if kind == "AWS::SQS::Queue":
            assert queue_attributes(moto, url)["SqsManagedSseEnabled"] == "true", logical


def test_rule_routes_the_instance_contact_events_to_the_queue(
    moto: LocalSqsServer, stack: Stack
) -> None:
    events = client(moto, "events")
    rule_name = stack.resources["ContactEventsRule"][1]
    rule = events.describe_rule(Name=rule_name)
    assert rule["Arn"] == stack.outputs["ContactEventsRuleArn"]
    assert rule.get("EventBusName", "default") == "default"
    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.connect"],
        "detail-type": ["Amazon Connect Contact Event", "Connect Customer Contact Event"],
        "detail": {"instanceArn": [INSTANCE_ARN], "eventType": CONTACT_EVENT_TYPES},
    }
    (target,) = events.list_targets_by_rule(Rule=rule_name)["Targets"]
    contact_events = queue_attributes(moto, stack.outputs["OrchestratorContactEventsQueueUrl"])
    assert target["Arn"] == contact_events["QueueArn"]
    assert "RoleArn" not in target, "SQS targets are authorized by the queue policy"
    dlq = queue_attributes(moto, stack.resources["ContactEventsDeadLetterQueue"][1])
    assert target["DeadLetterConfig"]["Arn"] == dlq["QueueArn"]
    # An event older than the longest watch is useless.
    max_wait = WatchSettings.model_fields["max_wait_s"].default
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= max_wait


def test_outputs_fill_real_settings_and_load(stack: Stack) -> None:
    ours = {k: v for k, v in stack.outputs.items() if k.startswith("Orchestrator")}
    assert set(ours) == {
        "OrchestratorAwsRegion",
        "OrchestratorQueueUrl",
        "OrchestratorConnectInstanceId",
        "OrchestratorConnectContactFlowId",
        "OrchestratorEventsSqsQueueUrl",
        "OrchestratorEventsSnsTopicArn",
        "OrchestratorEventsEventbridgeBus",
        "OrchestratorEventsReplyToAllowed",
        "OrchestratorContactEventsQueueUrl",
    }
    env = {}
    for key, value in ours.items():
        variable = stack.described[key]
        setting_of_env(variable)  # a real [section] key
        assert env_name_to_output_key(variable) == key, (key, variable)
        env[variable] = value
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in env.items():
            patch.setenv(variable, value)
        settings = load_settings()
    assert settings.queue.url == ours["OrchestratorQueueUrl"]
    assert settings.connect.instance_id == INSTANCE_ID
    assert settings.connect.contact_flow_id == FLOW_ID
    assert settings.contact_events.queue_url == ours["OrchestratorContactEventsQueueUrl"]
    assert settings.events.eventbridge_bus and settings.events.sns_topic_arn
    assert settings.events.reply_to_allowed == [f"arn:aws:sqs:{REGION}:{ACCOUNT}:{REPLY_PREFIX}-*"]
    for key, description in stack.described.items():
        if not key.startswith("Orchestrator"):
            assert not description.startswith("ORCHESTRATOR_"), key


def test_role_grants_exactly_what_iam_policy_json_grants(
    moto: LocalSqsServer, stack: Stack
) -> None:
    deployed = {s["Sid"]: s for s in role_policy(moto, stack)}
    documented = {s["Sid"]: s for s in json.loads(IAM_POLICY.read_text())["Statement"]}
    assert set(deployed) == set(documented)
    sqs = {
        logical: queue_attributes(moto, url)["QueueArn"].rsplit(":", 1)[-1]
        for logical, (kind, url) in stack.resources.items()
        if kind == "AWS::SQS::Queue"
    }
    placeholders = {
        "REGION": REGION,
        "ACCOUNT_ID": ACCOUNT,
        "INSTANCE_ID": INSTANCE_ID,
        "CONTACT_FLOW_ID": FLOW_ID,
        "REQUEST_QUEUE_NAME": sqs["RequestQueue"],
        "EVENTS_QUEUE_NAME": sqs["EventsQueue"],
        "CONTACT_EVENTS_QUEUE_NAME": sqs["ContactEventsQueue"],
        "EVENTS_TOPIC_NAME": stack.outputs["OrchestratorEventsSnsTopicArn"].rsplit(":", 1)[-1],
        "EVENT_BUS_NAME": stack.outputs["OrchestratorEventsEventbridgeBus"],
        "REPLY_QUEUE_PREFIX": REPLY_PREFIX,
    }
    for sid, statement in documented.items():
        assert deployed[sid]["Effect"] == statement["Effect"] == "Allow", sid
        assert sorted(as_list(deployed[sid]["Action"])) == sorted(as_list(statement["Action"]))
        filled = []
        for resource in as_list(statement["Resource"]):
            arn = resource
            for placeholder in sorted(placeholders, key=len, reverse=True):
                arn = arn.replace(placeholder, placeholders[placeholder])
            filled.append(arn)
        assert sorted(as_list(deployed[sid]["Resource"])) == sorted(filled), sid


def test_irsa_trusts_the_service_account_and_the_keda_operator(
    moto: LocalSqsServer, stack: Stack
) -> None:
    (statement,) = trust_policy(moto, stack)["Statement"]
    assert statement["Principal"] == {"Federated": OIDC_PROVIDER}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {
            f"{OIDC_ISSUER}:aud": "sts.amazonaws.com",
            f"{OIDC_ISSUER}:sub": [
                "system:serviceaccount:contact-orchestrator:contact-orchestrator",
                "system:serviceaccount:keda:keda-operator",
            ],
        }
    }


@pytest.mark.parametrize(
    ("trust", "principal", "actions"),
    [
        ("eks-pod-identity", "pods.eks.amazonaws.com", ["sts:AssumeRole", "sts:TagSession"]),
        ("ecs-task", "ecs-tasks.amazonaws.com", ["sts:AssumeRole"]),
    ],
)
def test_other_trusts_and_no_sinks_leave_out_what_is_not_created(
    moto: LocalSqsServer, trust: str, principal: str, actions: list[str]
) -> None:
    stack = deploy(
        moto.url,
        **full_parameters(
            WorkerTrust=trust,
            EksOidcProviderArn="",
            CreateEventsQueue="false",
            CreateEventsTopic="false",
            CreateEventsBus="false",
            ReplyQueueArnPattern="",
        ),
    )
    (statement,) = trust_policy(moto, stack)["Statement"]
    assert statement["Principal"] == {"Service": principal}
    assert as_list(statement["Action"]) == actions
    sids = {s["Sid"] for s in role_policy(moto, stack)}
    assert sids == {
        "ConsumeRequestQueue",
        "StartContactsInFlow",
        "WatchContacts",
        "StartScreenSharing",
        "StopContactsLetGo",
        "ConsumeContactEvents",
    }
    assert not {"EventsQueue", "EventsTopic", "EventsBus"} & set(stack.resources)
    assert not any(key.startswith("OrchestratorEvents") for key in stack.outputs)


# -- a real worker on the stack ------------------------------------------------------------------


async def test_worker_runs_a_request_on_the_stack_queues_within_the_stack_role(
    start_emulator: Any, moto: LocalSqsServer, stack: Stack
) -> None:
    outputs = stack.outputs
    emulator = await start_emulator(
        instance_ids=frozenset({INSTANCE_ID}),
        contact_flow_ids=frozenset({FLOW_ID}),
        # What the EventBridge rule would deliver, straight onto the stack's queue.
        events_queue_url=outputs["OrchestratorContactEventsQueueUrl"],
        events_endpoint_url=moto.url,
    )
    session = get_session()
    async with session.create_client("sqs", region_name=REGION, endpoint_url=moto.url) as sqs:
        sqs_client: SQSClient = sqs
        queue = outputs["OrchestratorQueueUrl"]
        await send_all(sqs_client, queue, [request_body("on-the-stack")])
        settings = settings_for(
            emulator.url,
            moto.url,
            queue,
            events={
                "sqs_queue_url": outputs["OrchestratorEventsSqsQueueUrl"],
                "sns_topic_arn": outputs["OrchestratorEventsSnsTopicArn"],
                "eventbridge_bus": outputs["OrchestratorEventsEventbridgeBus"],
            },
            contact_events={"queue_url": outputs["OrchestratorContactEventsQueueUrl"]},
            connect={
                "instance_id": outputs["OrchestratorConnectInstanceId"],
                "contact_flow_id": outputs["OrchestratorConnectContactFlowId"],
            },
        )
        recording = AioSession()
        recorder = Recorder(recording)
        async with open_worker(settings, session=recording) as worker:
            await worker.run(drain=True)

        assert worker.metrics.value("orchestrator_messages_acknowledged_total") == 1
        assert await queue_counts(sqs_client, queue) == (0, 0)
        assert (await queue_counts(sqs_client, outputs["OrchestratorEventsSqsQueueUrl"]))[0] >= 3

    statements = role_policy(moto, stack)
    assert recorder.calls
    for call in recorder.calls:
        for arn in call.resources(REGION, ACCOUNT):
            assert statements_allow(statements, call.action, arn), (call.action, arn)
