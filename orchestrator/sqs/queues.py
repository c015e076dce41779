"""What a queue says about itself: its redrive policy (and so its dead-letter queue), its ARN,
its size and its message size limit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from orchestrator.sqs.client import is_missing_queue
from orchestrator.sqs.limits import DEFAULT_MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeNameType


@dataclass(frozen=True)
class RedrivePolicy:
    """A queue's redrive policy: after `max_receive_count` receives a message moves to the
    queue whose ARN is `dead_letter_target_arn`."""

    max_receive_count: int
    dead_letter_target_arn: str

    @classmethod
    def parse(cls, text: str) -> RedrivePolicy:
        policy = json.loads(text)
        return cls(int(policy["maxReceiveCount"]), str(policy["deadLetterTargetArn"]))


async def _attribute(client: SQSClient, url: str, name: QueueAttributeNameType) -> str | None:
    response = await client.get_queue_attributes(QueueUrl=url, AttributeNames=[name])
    return response.get("Attributes", {}).get(name)


async def redrive_policy(client: SQSClient, url: str) -> RedrivePolicy | None:
    """Queue `url`'s redrive policy, or None when it has none."""
    text = await _attribute(client, url, "RedrivePolicy")
    return RedrivePolicy.parse(text) if text else None


async def queue_arn(client: SQSClient, url: str) -> str:
    return str(await _attribute(client, url, "QueueArn"))


async def url_of_arn(client: SQSClient, arn: str) -> str:
    """The URL of the queue with ARN `arn` (`arn:aws:sqs:REGION:ACCOUNT:NAME`)."""
    *_, account, name = arn.split(":")
    response = await client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
    return response["QueueUrl"]


async def dead_letter_queue_of(client: SQSClient, url: str) -> str | None:
    """The URL of queue `url`'s dead-letter queue (from its redrive policy), or None."""
    policy = await redrive_policy(client, url)
    return None if policy is None else await url_of_arn(client, policy.dead_letter_target_arn)


async def approximate_counts(client: SQSClient, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of the queue, as SQS estimates them."""
    response = await client.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    attributes = response.get("Attributes", {})
    return (
        int(attributes.get("ApproximateNumberOfMessages", 0)),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    )


async def max_message_bytes(client: SQSClient, url: str) -> int:
    """The queue's MaximumMessageSize (SQS's default when it cannot be read). A queue that does
    not exist raises."""
    try:
        value = await _attribute(client, url, "MaximumMessageSize")
    except ClientError as exc:
        if is_missing_queue(exc):
            raise
        return DEFAULT_MAX_MESSAGE_BYTES
    return int(value or DEFAULT_MAX_MESSAGE_BYTES)
