"""`check-config --probe`: try what the configuration names before a worker depends on it.

One cheap call each: the request queue (its redrive policy), its dead-letter queue, the
lifecycle-events queue and the Connect contact-events queue when configured (GetQueueAttributes),
and Connect (DescribeContact of a contact that does not exist: `ResourceNotFoundException` means
Connect answered and let the caller ask). Each problem is one line; none means every call
answered as expected.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from orchestrator.connect.gateway import connect_client_config
from orchestrator.daemon.settings import Settings
from orchestrator.sqs import describe_problem, open_sqs, queue_arn, redrive_policy, url_of_arn

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

#: The answer that proves Connect was reached and the caller may describe contacts.
_CONNECT_ANSWERED = frozenset({"ResourceNotFoundException"})
#: An instance id for the probe when `[connect] instance_id` is unset (well-formed, unknown).
_ANY_INSTANCE = "00000000-0000-0000-0000-000000000000"


async def _connect(settings: Settings, session: AioSession) -> list[str]:
    instance = settings.connect.instance_id or _ANY_INSTANCE
    endpoint = settings.endpoint("connect")
    async with session.create_client(
        "connect",
        region_name=settings.aws.region,
        endpoint_url=endpoint,
        config=connect_client_config(),
    ) as connect:
        try:
            await connect.describe_contact(InstanceId=instance, ContactId=str(uuid.uuid4()))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _CONNECT_ANSWERED:
                return []
            message = exc.response.get("Error", {}).get("Message", "")
            return [f"connect: DescribeContact answered {code}: {message}"]
        except BotoCoreError as exc:
            where = endpoint or f"https://connect.{settings.aws.region}.amazonaws.com"
            return [f"connect: cannot reach {where}: {type(exc).__name__}"]
    return ["connect: DescribeContact of a contact that does not exist did not fail"]


async def probe(settings: Settings, session: AioSession | None = None) -> list[str]:
    """One line per problem found with the queues and Connect the settings name."""
    session = session or get_session()
    Section = Literal["queue", "events", "contact_events"]

    async def queue(
        label: str,
        url: str,
        section: Section,
        then: Callable[[SQSClient], Awaitable[list[str]]] | None = None,
    ) -> list[str]:
        async with open_sqs(
            url,
            endpoint_url=settings.endpoint(section),
            default_region=settings.aws.region,
            session=session,
        ) as sqs:
            try:
                await queue_arn(sqs, url)
                return await then(sqs) if then is not None else []
            except (ClientError, BotoCoreError) as exc:
                return [f"{label}: {describe_problem(exc, url)}"]

    async def dead_letter_queue(sqs: SQSClient) -> list[str]:
        policy = await redrive_policy(sqs, settings.queue.url)
        if policy is None:
            return []  # the worker logs queue.no_redrive_policy: a choice, not a fault
        arn = policy.dead_letter_target_arn
        try:
            await queue_arn(sqs, await url_of_arn(sqs, arn))
        except ClientError as exc:
            return [f"dead-letter queue: {describe_problem(exc, arn)}"]
        return []

    problems = await queue("request queue", settings.queue.url, "queue", dead_letter_queue)
    if settings.events.sqs_queue_url:
        problems += await queue("events queue", settings.events.sqs_queue_url, "events")
    if settings.contact_events.queue_url:
        problems += await queue(
            "contact-events queue", settings.contact_events.queue_url, "contact_events"
        )
    return problems + await _connect(settings, session)
