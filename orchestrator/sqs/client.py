"""SQS clients and their errors: one configuration, the region a queue URL names, and one line
for an error a one-shot command cannot get past."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import ClientError, EndpointConnectionError

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

#: The error codes of a queue that does not exist (JSON and query protocols).
MISSING_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
#: `https://sqs.REGION.amazonaws.com/...` and the legacy `https://REGION.queue.amazonaws.com/...`
_QUEUE_REGION = re.compile(r"^(?:sqs\.([a-z0-9-]+)|([a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?$")


def aws_client_config(max_pool_connections: int = 20) -> AioConfig:
    """Settings of every AWS client but Connect's (SQS, SNS, EventBridge): botocore's standard
    retries (3 attempts) for connection blips, and a read timeout longer than the 20 s long
    poll."""
    return AioConfig(
        retries={"total_max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=40,
        max_pool_connections=max_pool_connections,
    )


def region_of(queue_url: str) -> str | None:
    """The region in an AWS queue URL (`https://sqs.eu-west-1.amazonaws.com/...`), else None."""
    match = _QUEUE_REGION.match(urlsplit(queue_url).hostname or "")
    return (match.group(1) or match.group(2)) if match else None


def is_fifo(queue_url: str) -> bool:
    return queue_url.endswith(".fifo")


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a `ClientError`, else None."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or None
    return None


def is_missing_queue(exc: BaseException) -> bool:
    return error_code(exc) in MISSING_QUEUE


def describe_problem(exc: Exception, queue_url: str) -> str:
    """One line for an AWS error a one-shot command cannot get past."""
    if isinstance(exc, ClientError):
        if is_missing_queue(exc):
            return f"queue does not exist: {queue_url}"
        error = exc.response.get("Error", {})
        operation = getattr(exc, "operation_name", "call")
        return f"{operation} failed: {error.get('Code', '')}: {error.get('Message', '')}"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach the SQS endpoint {exc.kwargs.get('endpoint_url', '')}"
    return f"{type(exc).__name__}: {exc}"


@asynccontextmanager
async def open_sqs(
    queue_url: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    default_region: str,
    session: AioSession | None = None,
) -> AsyncIterator[SQSClient]:
    """An SQS client for `queue_url`: its region is `region`, else the URL's, else
    `default_region`."""
    async with (session or get_session()).create_client(
        "sqs",
        region_name=region or region_of(queue_url) or default_region,
        endpoint_url=endpoint_url,
        config=aws_client_config(),
    ) as client:
        yield client
