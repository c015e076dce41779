"""A reference web backend: the customer's browser asks for a call, this backend submits it
through `CallClient` and hands back the connection data, then streams the call's progress.

    POST   /calls                   submit a call; answers with the connection data (201)
    GET    /calls/{id}/events       the call's events as server-sent events, up to the final one
    DELETE /calls/{id}              cancel the call (202)
    GET    /                        a page playing the customer ("call us", place in line, outcome)

Run it (the worker must allow its reply queues: `[events] reply_to_allowed`):

    WEB_QUEUE_URL=https://sqs.eu-west-1.amazonaws.com/123456789012/call-requests \\
    WEB_INSTANCE_ID=... WEB_CONTACT_FLOW_ID=... \\
    uvicorn --factory examples.web.app:app_from_env

One `CallClient` per process (one reply queue per replica); a call's events reach the replica that
submitted it, so put the replicas behind sticky sessions (or follow events through SNS with a
`request_id` filter instead: docs/integrating.md).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from orchestrator.client import (
    Call,
    CallClient,
    CallEnded,
    CallEvent,
    CallTimeout,
    ClientError,
    RequestRejected,
)

STATIC = Path(__file__).parent / "static"
#: Connection data goes to the browser once, in the answer to POST /calls; never in the stream.
SECRET_KEYS = frozenset({"ParticipantToken", "ConnectionData"})


@dataclass(frozen=True)
class WebSettings:
    queue_url: str
    region: str | None = None
    endpoint_url: str | None = None
    #: Fields every request gets (InstanceId, ContactFlowId, Attributes ...): the browser only
    #: says who is calling.
    request_template: Mapping[str, Any] = field(default_factory=dict)
    started_timeout_s: float = 30.0
    #: Calls this process remembers for /events and DELETE (the oldest forgotten first).
    max_calls: int = 10_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> WebSettings:
        names = (("InstanceId", "WEB_INSTANCE_ID"), ("ContactFlowId", "WEB_CONTACT_FLOW_ID"))
        template = {key: env[name] for key, name in names if env.get(name)}
        return cls(
            queue_url=env["WEB_QUEUE_URL"],
            region=env.get("WEB_REGION"),
            endpoint_url=env.get("WEB_ENDPOINT_URL"),
            request_template=template,
        )


def public(event: CallEvent) -> dict[str, Any]:
    """The event as the browser sees it: no connection data."""
    data = {k: v for k, v in event.data.items() if k not in SECRET_KEYS}
    return {
        "id": event.id,
        "type": event.type,
        "time": event.time.isoformat(),
        "final": event.final,
        "data": data,
    }


class Calls:
    """The calls this process submitted, by request id (bounded: oldest forgotten first)."""

    def __init__(self, client: CallClient, limit: int) -> None:
        self.client = client
        self._calls: OrderedDict[str, Call] = OrderedDict()
        self._limit = limit

    def add(self, call: Call) -> None:
        self._calls[call.request_id] = call
        while len(self._calls) > self._limit:
            _, oldest = self._calls.popitem(last=False)
            self.client.forget(oldest)

    def get(self, request_id: str) -> Call | None:
        return self._calls.get(request_id)


def create_app(settings: WebSettings, *, client: CallClient | None = None) -> Starlette:
    """The app; it opens `client` (or one made from `settings`) for its lifetime."""
    made = client or CallClient(
        settings.queue_url, region=settings.region, endpoint_url=settings.endpoint_url
    )
    calls = Calls(made, settings.max_calls)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with made:
            yield

    async def submit(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            return JSONResponse({"error": 'send {"name": "..."}'}, status_code=400)
        document = {
            **settings.request_template,
            "ParticipantDetails": {"DisplayName": body["name"][:256] or "Customer"},
        }
        try:
            call = await made.submit(document)
        except RequestRejected as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except ClientError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        calls.add(call)
        try:
            started = await call.started(timeout=settings.started_timeout_s)
        except CallEnded as exc:
            return JSONResponse(
                {"request_id": call.request_id, "error": str(exc), "event": public(exc.event)},
                status_code=409,
            )
        except CallTimeout as exc:
            return JSONResponse({"request_id": call.request_id, "error": str(exc)}, status_code=504)
        return JSONResponse(
            {
                "request_id": call.request_id,
                "contact_id": started.contact_id,
                "participant_token": started.data.get("ParticipantToken"),
                "connection_data": started.data.get("ConnectionData"),
            },
            status_code=201,
        )

    async def events(request: Request) -> Response:
        call = calls.get(request.path_params["request_id"])
        if call is None:
            return JSONResponse({"error": "no such call"}, status_code=404)

        async def stream() -> AsyncIterator[str]:
            async for event in call.events():
                payload = json.dumps(public(event), separators=(",", ":"))
                # No `event:` field: every type, one this page does not know too, reaches
                # the browser's `onmessage`.
                yield f"id: {event.id}\ndata: {payload}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def cancel(request: Request) -> Response:
        call = calls.get(request.path_params["request_id"])
        if call is None:
            return JSONResponse({"error": "no such call"}, status_code=404)
        try:
            await call.cancel()
        except ClientError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse({"request_id": call.request_id, "cancelling": True}, status_code=202)

    async def page(_: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    return Starlette(
        routes=[
            Route("/", page),
            Route("/calls", submit, methods=["POST"]),
            Route("/calls/{request_id}/events", events),
            Route("/calls/{request_id}", cancel, methods=["DELETE"]),
        ],
        lifespan=lifespan,
    )


def app_from_env() -> Starlette:
    """`uvicorn --factory examples.web.app:app_from_env` (settings: `WebSettings.from_env`)."""
    return create_app(WebSettings.from_env())
