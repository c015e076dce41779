"""`orchestrator enqueue` and `orchestrator cancel`: call requests and cancels, one JSON object
per line, checked with the worker's own rules and sent in batches SQS accepts (client passed in).

Each line is validated as the worker validates a message (`parse_message` with the configured
request defaults): an invalid line is refused, with why, instead of being sent only to be
rejected and dead-lettered. A line over the queue's MaximumMessageSize is skipped. On a FIFO
queue each request is its own message group, deduplicated by its RequestId; a cancel has a group
of its own (`cancel:` RequestId: behind its request, it would wait for the request to end).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from orchestrator import tracing
from orchestrator.engine.request import (
    RequestDefaults,
    RequestRejected,
    cancel_document,
    parse_message,
)
from orchestrator.sqs import (
    OutgoingMessage,
    batches,
    describe_problem,
    is_fifo,
    max_message_bytes,
    send_batch,
    trace_context,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient


@dataclass
class EnqueueReport:
    """What became of each line: sent, or a problem naming the line."""

    lines: int
    sent: int = 0
    #: One line per line not sent: "refused: line 3: ...", "skipped: ...", "failed: ...".
    problems: list[str] = field(default_factory=list)
    #: An error no batch could get past (a missing queue, an unreachable endpoint).
    stopped: str | None = None


def cancel_lines(
    request_ids: list[str], *, contact_id: str | None = None, instance_id: str | None = None
) -> list[str]:
    """The cancel messages for `request_ids` (naming the contact, when one request is given
    with its `contact_id`)."""
    return [
        json.dumps(cancel_document(rid, contact_id=contact_id, instance_id=instance_id))
        for rid in request_ids
    ]


def _request_id(number: int, body: str) -> str:
    """The line's request id; a cancel's is `cancel:RID` (on a FIFO queue a cancel has its own
    group: in its request's group it would wait until the request ended)."""
    try:
        document = json.loads(body)
        request_id = str(document.get("RequestId") or f"line-{number}")
        return f"cancel:{request_id}" if document.get("Action") == "cancel" else request_id
    except (ValueError, AttributeError):
        return f"line-{number}"


def _message(number: int, body: str, queue_url: str) -> OutgoingMessage:
    """The line as a message; when tracing, with its `traceparent` (a `create` span each)."""
    fifo = is_fifo(queue_url)
    request_id = _request_id(number, body) if fifo or tracing.enabled() else None
    attributes = trace_context.created(queue_url, request_id=request_id)
    if not fifo:
        return OutgoingMessage(body, attributes=attributes)
    return OutgoingMessage(body, attributes=attributes, group_id=request_id, dedup_id=request_id)


async def enqueue(
    client: SQSClient,
    queue_url: str,
    lines: list[str],
    *,
    defaults: RequestDefaults | None,
) -> EnqueueReport:
    """Send `lines` (checked against `defaults`; None sends them unchecked). Stops at the first
    error no batch can get past."""
    report = EnqueueReport(lines=len(lines))
    with trace_context.sending(queue_url, len(lines)):
        await _send(client, queue_url, lines, defaults, report)
    return report


async def _send(
    client: SQSClient,
    queue_url: str,
    lines: list[str],
    defaults: RequestDefaults | None,
    report: EnqueueReport,
) -> None:
    try:
        limit = await max_message_bytes(client, queue_url)
        numbered: list[tuple[int, OutgoingMessage]] = []
        for number, body in enumerate(lines, 1):
            message = _message(number, body, queue_url)
            if message.size > limit:
                report.problems.append(
                    f"skipped: line {number}: {message.size} bytes, over the queue's "
                    f"{limit}-byte limit"
                )
                continue
            if defaults is not None:
                try:
                    parse_message(body, defaults)
                except RequestRejected as exc:
                    report.problems.append(f"refused: line {number}: {exc}")
                    continue
            numbered.append((number, message))
        for batch in batches(numbered, lambda item: item[1].size, max_bytes=limit):
            results = await send_batch(client, queue_url, [message for _, message in batch])
            for (number, _), result in zip(batch, results, strict=True):
                if result.error is None:
                    report.sent += 1
                else:
                    report.problems.append(f"failed: line {number}: {result.error}")
    except (ClientError, BotoCoreError) as exc:
        report.stopped = describe_problem(exc, queue_url)
