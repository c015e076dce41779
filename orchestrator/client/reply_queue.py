"""The client's reply queue: one per producer, created at start-up, deleted on close.

AWS's guidance for request and reply over SQS: one reply queue per producer, a correlation id on
each request, never a queue per request (a deleted queue's name stays blocked for 60 s). The queue
is named `<prefix>-<random>`, tagged `contact-orchestrator:role=reply-queue` and
`contact-orchestrator:created-at=<ISO time>`, keeps messages `RETENTION_S` seconds only (replies
carry join tokens), and, given the orchestrator's role ARN, has a queue policy that lets that role
send to it. A producer that crashed leaves its queue behind: `stale_reply_queues` finds those of
a prefix older than a given age by their tags (`orchestrator reply-queues --cleanup`).
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from orchestrator.sqs import queue_arn

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

ROLE_TAG = "contact-orchestrator:role"
ROLE = "reply-queue"
CREATED_AT_TAG = "contact-orchestrator:created-at"
#: Replies carry join tokens: a message nobody read is gone after 15 minutes.
RETENTION_S = 900
DEFAULT_PREFIX = "orchestrator-replies"
#: SQS's longest queue name, and the random part's length.
_MAX_NAME = 80
_RANDOM_HEX = 12


def reply_queue_name(prefix: str) -> str:
    """`<prefix>-<random>`; `ValueError` for a prefix SQS would refuse."""
    name = f"{prefix}-{secrets.token_hex(_RANDOM_HEX // 2)}"
    if len(name) > _MAX_NAME or not all(c.isalnum() or c in "-_" for c in prefix):
        raise ValueError(
            f"reply queue prefix {prefix!r}: letters, digits, '-' and '_', "
            f"at most {_MAX_NAME - _RANDOM_HEX - 1} characters"
        )
    return name


def _iso(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def send_policy(queue: str, role_arn: str) -> str:
    """A queue policy that lets `role_arn` (the orchestrator's role) send to `queue` (an ARN)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "OrchestratorSendsReplies",
                    "Effect": "Allow",
                    "Principal": {"AWS": role_arn},
                    "Action": "sqs:SendMessage",
                    "Resource": queue,
                }
            ],
        }
    )


async def create_reply_queue(
    client: SQSClient,
    *,
    prefix: str = DEFAULT_PREFIX,
    role_arn: str | None = None,
    now: datetime | None = None,
) -> str:
    """Create a reply queue (see the module); its URL."""
    created = await client.create_queue(
        QueueName=reply_queue_name(prefix),
        Attributes={"MessageRetentionPeriod": str(RETENTION_S)},
        tags={ROLE_TAG: ROLE, CREATED_AT_TAG: _iso(now or datetime.now(UTC))},
    )
    url = created["QueueUrl"]
    if role_arn:
        arn = await queue_arn(client, url)
        await client.set_queue_attributes(
            QueueUrl=url, Attributes={"Policy": send_policy(arn, role_arn)}
        )
    return url


async def stale_reply_queues(
    client: SQSClient, *, prefix: str, older_than_s: float, now: datetime | None = None
) -> list[str]:
    """The reply queues named `<prefix>-...` and tagged as such, created more than
    `older_than_s` seconds ago (a queue without the tags is never one of them)."""
    now = now or datetime.now(UTC)
    urls: list[str] = []
    token: str | None = None
    while True:
        page = await (
            client.list_queues(QueueNamePrefix=f"{prefix}-", MaxResults=1000, NextToken=token)
            if token
            else client.list_queues(QueueNamePrefix=f"{prefix}-", MaxResults=1000)
        )
        urls += page.get("QueueUrls", [])
        token = page.get("NextToken")
        if not token:
            break
    stale = []
    for url in urls:
        tags = (await client.list_queue_tags(QueueUrl=url)).get("Tags", {})
        if tags.get(ROLE_TAG) != ROLE or CREATED_AT_TAG not in tags:
            continue
        try:
            created = datetime.fromisoformat(tags[CREATED_AT_TAG])
        except ValueError:
            continue
        if created.tzinfo is not None and (now - created).total_seconds() > older_than_s:
            stale.append(url)
    return stale
