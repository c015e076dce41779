"""`CallClient`: submit call requests and await their events through a reply queue.

```python
async with CallClient(queue_url=..., region="eu-west-1") as client:
    call = await client.submit({"InstanceId": ..., "ContactFlowId": ...,
                                "ParticipantDetails": {"DisplayName": "Jane"}})
    started = await call.started(timeout=30)        # contact.started: the connection data
    async for event in call.events(): ...           # ends after the final event
    final = await call.outcome(timeout=300)
```

Each request carries `ReplyTo` (the client's reply queue) and its `RequestId` (generated when
absent) as the correlation id; the worker sends the request's events there too when its
`[events] reply_to_allowed` allows the queue. One long poll per client, a task of the client's
own task group, routes each reply to its handle by request id; a reply for a request no handle
holds (yet, or any more) is kept `orphan_ttl_s` seconds, at most `max_orphans` of them, then
dropped and counted (`dropped`). A handle lets go of its events once the final one arrived.

A request is validated with the worker's own parser before it is sent, so a malformed one fails
in `submit` (`RequestRejected`, naming every bad field), not silently in the worker. Fields the
worker's `[connect]` defaults may supply (InstanceId, ContactFlowId) may be left out unless
`request_defaults` says what they are. SQS failures raise `ClientError`, one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import structlog
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError
from botocore.exceptions import ClientError as BotoClientError

from orchestrator.client.call import Call
from orchestrator.client.events import CallEvent, ClientError
from orchestrator.client.reply_queue import DEFAULT_PREFIX, create_reply_queue
from orchestrator.engine.request import RequestDefaults, cancel_document, parse_request
from orchestrator.retry import backoff_s
from orchestrator.sqs import (
    MAX_WAIT_TIME_S,
    OutgoingMessage,
    QueueMessage,
    delete_batch,
    describe_problem,
    is_fifo,
    open_sqs,
    receive,
    send_batch,
    trace_context,
)

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from types_aiobotocore_sqs import SQSClient

log = structlog.get_logger("orchestrator.client")

#: What stands in for the fields the worker's defaults may supply, while a request is validated.
_WORKER_DEFAULT = "worker-default"
_SQS_FAILURES = (BotoClientError, BotoCoreError, OSError)


def _problem(exc: Exception, what: str, queue_url: str) -> ClientError:
    return ClientError(f"{what}: {describe_problem(exc, queue_url)}")


class CallClient:
    """Submits call requests to `queue_url` and routes their events to `Call` handles.

    `reply_queue_url`: use this queue for replies, and never delete it; else the client creates
    its own at start-up (`reply_queue_prefix`, a policy letting `orchestrator_role_arn` send to
    it when given) and deletes it on close."""

    def __init__(
        self,
        queue_url: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        reply_queue_url: str | None = None,
        reply_queue_prefix: str = DEFAULT_PREFIX,
        orchestrator_role_arn: str | None = None,
        request_defaults: RequestDefaults | None = None,
        session: AioSession | None = None,
        wait_time_s: int = MAX_WAIT_TIME_S,
        orphan_ttl_s: float = 60.0,
        max_orphans: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queue_url = queue_url
        self._region = region
        self._endpoint_url = endpoint_url
        self._given_reply_queue = reply_queue_url
        self.reply_queue_url: str | None = reply_queue_url
        self._prefix = reply_queue_prefix
        self._role_arn = orchestrator_role_arn
        # Fields the worker's defaults may supply are left to the worker; ReplyTo is the
        # client's own queue, which the worker's allow-list (not known here) judges.
        self._defaults = request_defaults or RequestDefaults(
            instance_id=_WORKER_DEFAULT, contact_flow_id=_WORKER_DEFAULT
        )
        self._session = session
        self._wait_time_s = wait_time_s
        self._orphan_ttl_s = orphan_ttl_s
        self._max_orphans = max_orphans
        self._clock = clock
        self._calls: dict[str, Call] = {}
        #: request id -> (when kept, its events), oldest first.
        self._orphans: OrderedDict[str, tuple[float, list[CallEvent]]] = OrderedDict()
        self._orphan_count = 0
        #: Replies dropped: for no handle within `orphan_ttl_s`, or not an event at all.
        self.dropped = 0
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: SQSClient | None = None
        self._tg: TaskGroup | None = None

    # -- start and close -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            self._client = await stack.enter_async_context(
                open_sqs(
                    self.queue_url,
                    region=self._region,
                    endpoint_url=self._endpoint_url,
                    default_region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                    session=self._session,
                )
            )
            if self._given_reply_queue is None:
                try:
                    url = await create_reply_queue(
                        self._client, prefix=self._prefix, role_arn=self._role_arn
                    )
                except _SQS_FAILURES as exc:
                    raise _problem(exc, "creating the reply queue", self._prefix) from None
                self.reply_queue_url = url
                stack.push_async_callback(self._delete_reply_queue, url)
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._tg.cancel_scope.cancel)
            self._tg.start_soon(self._poll, name="orchestrator.client.replies")
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    async def _delete_reply_queue(self, url: str) -> None:
        assert self._client is not None  # noqa: S101
        with anyio.CancelScope(shield=True):
            try:
                await self._client.delete_queue(QueueUrl=url)
            except _SQS_FAILURES as exc:
                log.warning("client.reply_queue_not_deleted", reply_queue=url, error=str(exc))

    @property
    def _sqs(self) -> SQSClient:
        if self._client is None:
            raise RuntimeError("use the CallClient inside `async with`")
        return self._client

    @property
    def _reply_to(self) -> str:
        if self.reply_queue_url is None:
            raise RuntimeError("use the CallClient inside `async with`")
        return self.reply_queue_url

    # -- requests ------------------------------------------------------------------------------

    def prepare(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """The document `submit` sends for `request`: a RequestId (generated when absent) and
        ReplyTo set, validated by the worker's parser (`RequestRejected` when invalid)."""
        document = dict(request)
        document.setdefault("RequestId", str(uuid.uuid4()))
        given = document.pop("ReplyTo", None)
        if given is not None and given != self.reply_queue_url:
            raise ValueError("ReplyTo is the client's reply queue: leave it out")
        parse_request(json.dumps(document), self._defaults)
        document["ReplyTo"] = self._reply_to
        return document

    async def submit(self, request: Mapping[str, Any]) -> Call:
        """Send a call request; its handle. The handle exists before the request is sent, so
        no reply can miss it."""
        document = self.prepare(request)
        request_id = str(document["RequestId"])
        call = self.call(request_id)
        try:
            await self._send(document, dedup_id=request_id)
        except ClientError:
            self._calls.pop(request_id, None)
            raise
        return call

    def call(self, request_id: str) -> Call:
        """The handle of `request_id` (a request sent with this client's reply queue), made if
        none is held; replies kept for it meanwhile are delivered at once."""
        call = self._calls.get(request_id)
        if call is None:
            call = self._calls[request_id] = Call(request_id, self._cancel)
            _, kept = self._orphans.pop(request_id, (0.0, []))
            self._orphan_count -= len(kept)
            for event in kept:
                self._route(event)
        return call

    def forget(self, call: Call) -> None:
        """Stop routing replies to `call` (its later replies are kept a while, then dropped)."""
        if self._calls.get(call.request_id) is call:
            del self._calls[call.request_id]

    async def cancel(
        self, request_id: str, contact_id: str | None = None, instance_id: str | None = None
    ) -> None:
        """Send the cancel request for `request_id` (naming its contact, when known, lets any
        worker stop it; its instance then goes with it)."""
        document = cancel_document(
            request_id, contact_id=contact_id, instance_id=instance_id if contact_id else None
        )
        await self._send(document, dedup_id=f"{request_id}:cancel")

    async def _cancel(self, call: Call) -> None:
        await self.cancel(call.request_id, call.contact_id, call.instance_id)

    async def _send(self, document: Mapping[str, Any], *, dedup_id: str) -> None:
        fifo = is_fifo(self.queue_url)
        request_id = str(document["RequestId"])
        message = OutgoingMessage(
            json.dumps(document, separators=(",", ":")),
            # The producer's trace goes with the request when tracing is configured.
            attributes=trace_context.created(self.queue_url, request_id=request_id),
            group_id=request_id if fifo else None,
            dedup_id=dedup_id if fifo else None,
        )
        try:
            [result] = await send_batch(self._sqs, self.queue_url, [message])
        except _SQS_FAILURES as exc:
            raise _problem(exc, "sending the request", self.queue_url) from None
        if result.error is not None:
            raise ClientError(f"sending the request: SQS refused it: {result.error}")

    # -- replies -------------------------------------------------------------------------------

    async def _poll(self) -> None:
        """The one long poll: receive replies, route them, delete them (while the next poll
        waits); errors back off."""
        failures = 0
        while True:
            try:
                messages = await receive(
                    self._sqs,
                    self._reply_to,
                    wait_time_s=self._wait_time_s,
                    system_attributes=(),
                )
            except _SQS_FAILURES as exc:
                failures += 1
                delay = backoff_s(failures, first_s=0.5, max_s=20.0)
                log.warning(
                    "client.receive_failed",
                    error=str(_problem(exc, "receiving replies", self._reply_to)),
                    retry_in_s=delay,
                )
                await anyio.sleep(delay)
                continue
            failures = 0
            for message in messages:
                self._accept(message)
            if messages:  # the next poll does not wait for the delete (a reply may be waiting)
                assert self._tg is not None  # noqa: S101 (polling within the client's block)
                self._tg.start_soon(self._delete, messages)

    def _accept(self, message: QueueMessage) -> None:
        try:
            event = CallEvent.parse(message.body)
        except ValueError as exc:
            self.dropped += 1
            log.warning("client.reply_not_an_event", error=str(exc))
            return
        self._route(event)

    def _route(self, event: CallEvent) -> None:
        call = self._calls.get(event.request_id)
        if call is None:
            self._keep(event)
            return
        call._deliver(event)
        if event.final:
            self.forget(call)

    def _keep(self, event: CallEvent) -> None:
        now = self._clock()
        self._expire(now)
        _, kept = self._orphans.setdefault(event.request_id, (now, []))
        kept.append(event)
        self._orphan_count += 1
        while self._orphan_count > self._max_orphans:
            _, (_, oldest) = self._orphans.popitem(last=False)
            self._orphan_count -= len(oldest)
            self.dropped += len(oldest)

    def _expire(self, now: float) -> None:
        while self._orphans:
            request_id, (kept_at, events) = next(iter(self._orphans.items()))
            if now - kept_at < self._orphan_ttl_s:
                return
            del self._orphans[request_id]
            self._orphan_count -= len(events)
            self.dropped += len(events)

    async def _delete(self, messages: list[QueueMessage]) -> None:
        try:
            await delete_batch(self._sqs, self._reply_to, messages)
        except _SQS_FAILURES as exc:  # redelivered later: the handles drop them by event id
            log.warning(
                "client.delete_failed",
                error=str(_problem(exc, "deleting replies", self._reply_to)),
            )
