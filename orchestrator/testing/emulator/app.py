"""The emulator's HTTP application: Connect's operations plus the `/_emulator/` control API.

Every Connect request goes through the same steps, in the order a real front door applies them:
authentication header, injected latency and faults, the account's quota, validation from the
service model, resources, then the operation itself. `/_emulator/stats` counts what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from .center import Contact, ContactCenter
from .config import OPERATIONS, EmulatorConfig
from .contact_events import ContactEventPublisher
from .quotas import QuotaTable
from .validation import validate_request
from .wire import (
    ERROR_STATUS,
    ApiError,
    error_response,
    json_response,
    unknown_routes_in_wire_format,
)

log = structlog.get_logger("orchestrator.testing.emulator")

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_CAPACITY_MESSAGE = (
    "The concurrent active calls limit for instance {instance} has been reached ({limit}); "
    "wait for active contacts to end."
)


#: What `/_emulator/stats` counts per operation (each listed, 0 until it happens).
OUTCOMES = (
    "calls", "successes", "throttled", "concurrency_limited", "faults", "dropped", "client_errors"
)  # fmt: skip


def _no_stats() -> dict[str, Counter[str]]:
    return {op: Counter() for op in OPERATIONS}


@dataclass
class EmulatorState:
    """Everything one running emulator holds; the aiohttp app keeps it under `STATE`."""

    config: EmulatorConfig
    clock: Callable[[], float] = time.time
    stats: dict[str, Counter[str]] = field(default_factory=_no_stats)

    def __post_init__(self) -> None:
        seed = self.config.seed
        self.rng = random.Random(seed)
        self.fault_rng = random.Random(None if seed is None else seed + 1)
        self.publisher = ContactEventPublisher(lambda: self.config, seed=seed)
        self.center = ContactCenter(
            lambda: self.config,
            clock=self.clock,
            rng=self.rng,
            on_transition=self.publisher.submit,
            wrap_up_rng=random.Random(None if seed is None else seed + 2),
        )
        self.quotas = QuotaTable(self.clock)
        self.center.background_started(self.clock())
        #: Errors injected through the control API: operation -> error codes answered in turn
        #: (None: that call goes through).
        self.injected: dict[str, deque[str | None]] = {}
        self.wakeup = asyncio.Event()
        #: When the simulation task next wakes up by itself (None: only when told).
        self.next_wake: float | None = None

    def schedule_changed(self) -> None:
        """Wake the simulation task if a transition is now due before it planned to look."""
        due = self.center.next_event_time()
        if due is not None and (self.next_wake is None or due < self.next_wake):
            self.wakeup.set()

    def reset(self) -> None:
        self.center.reset()
        self.center.background_started(self.clock())
        self.quotas.reset()
        self.injected.clear()
        self.publisher.reset()
        self.stats = _no_stats()
        self.wakeup.set()


STATE = web.AppKey("state", EmulatorState)

Handler = Callable[[EmulatorState, dict[str, Any]], dict[str, Any]]


def _access_key(request: web.Request) -> str | None:
    """The access key id from the SigV4 Authorization header (not verified cryptographically)."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("AWS4-HMAC-SHA256"):
        return None
    match = _CREDENTIAL.search(header)
    return match.group(1) if match else None


async def _front_door(request: web.Request, state: EmulatorState, operation: str) -> None:
    """Authentication, injected latency and faults, and the account's quota."""
    cfg = state.config
    stats = state.stats[operation]
    if _access_key(request) is None:
        raise ApiError(
            "AccessDeniedException",
            "Missing or malformed Authorization header: requests must be signed with SigV4.",
        )
    low, high = cfg.latency_ms
    if high > 0:
        await asyncio.sleep(state.fault_rng.uniform(low, high) / 1000.0)
    injected = state.injected.get(operation)
    code = injected.popleft() if injected else None
    if code is not None:
        if ERROR_STATUS[code] >= 500:
            stats["faults"] += 1
        raise ApiError(code, f"Injected fault: {code}.")
    if cfg.error_rate and state.fault_rng.random() < cfg.error_rate:
        stats["faults"] += 1
        raise ApiError("InternalServiceException", "Injected fault: internal service error.")
    quota = cfg.quotas.get(operation) if cfg.quotas_enabled else None
    # Quotas belong to the account, whichever of its keys or roles signed the call.
    if not state.quotas.allow(cfg.account_id, operation, quota):
        stats["throttled"] += 1
        # Connect's Start* APIs report their request rate as TooManyRequests (their concurrency
        # caps as LimitExceeded); the read APIs as Throttling.
        code = (
            "TooManyRequestsException"
            if operation == "StartWebRTCContact"
            else "ThrottlingException"
        )
        raise ApiError(code, "Rate exceeded")


def connect_operation(operation: str, handler: Handler) -> Callable[[web.Request], Awaitable[Any]]:
    """Wrap a Connect handler with the front-door steps every operation shares."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        stats = state.stats[operation]
        stats["calls"] += 1
        try:
            await _front_door(request, state, operation)
            params = await _params(request)
            validate_request(operation, params)
            state.center.advance(state.clock())
            body = handler(state, params)
        except ApiError as error:
            if error.status < 500 and error.status != 429:
                stats["client_errors"] += 1
            return error_response(error)
        state.schedule_changed()
        if state.config.drop_rate and state.fault_rng.random() < state.config.drop_rate:
            # The operation took effect; the response is lost on the way back.
            stats["dropped"] += 1
            stats["faults"] += 1
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=200)
        stats["successes"] += 1
        return json_response(body)

    return endpoint


async def _params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.match_info)
    if request.method in {"PUT", "POST"} and request.can_read_body:
        try:
            body = await request.json(loads=json.loads)
        except ValueError as exc:
            raise ApiError("InvalidParameterException", "Request body is not valid JSON.") from exc
        if not isinstance(body, dict):
            raise ApiError("InvalidParameterException", "Request body must be a JSON object.")
        params.update(body)
    return params


def _known_instance(state: EmulatorState, instance_id: str) -> None:
    allowed = state.config.instance_ids
    if allowed and instance_id not in allowed:
        raise ApiError("ResourceNotFoundException", f"Instance not found: {instance_id}")


def _contact(state: EmulatorState, instance_id: str, contact_id: str) -> Contact:
    _known_instance(state, instance_id)
    contact = state.center.contacts.get(contact_id)
    if contact is None or contact.instance_id != instance_id:
        raise ApiError("ResourceNotFoundException", f"Contact not found: {contact_id}")
    return contact


def start_webrtc_contact(state: EmulatorState, params: dict[str, Any]) -> dict[str, Any]:
    cfg = state.config
    instance_id = params["InstanceId"]
    _known_instance(state, instance_id)
    flows = cfg.contact_flow_ids
    if flows and params["ContactFlowId"] not in flows:
        raise ApiError(
            "ResourceNotFoundException", f"Contact flow not found: {params['ContactFlowId']}"
        )
    now = state.clock()
    token = params.get("ClientToken")
    contact = state.center.find_by_token(instance_id, token, now) if token else None
    if contact is None:
        limit = cfg.max_concurrent_calls
        if limit is not None and state.center.active_calls(instance_id) >= limit:
            state.stats["StartWebRTCContact"]["concurrency_limited"] += 1
            raise ApiError(
                "LimitExceededException",
                _CAPACITY_MESSAGE.format(instance=instance_id, limit=limit),
            )
        contact = state.center.start_contact(params, now)
    return {
        "ContactId": contact.id,
        "ParticipantId": contact.participant_id,
        "ParticipantToken": contact.participant_token,
        "ConnectionData": contact.connection_data,
    }


def describe_contact(state: EmulatorState, params: dict[str, Any]) -> dict[str, Any]:
    contact = _contact(state, params["InstanceId"], params["ContactId"])
    contact.describe_calls += 1
    if state.clock() - contact.created_at < state.config.consistency_delay_s:
        raise ApiError("ResourceNotFoundException", f"Contact not found: {contact.id}")
    contact.last_described_at = state.clock()
    return {"Contact": contact.describe()}


def start_screen_sharing(state: EmulatorState, params: dict[str, Any]) -> dict[str, Any]:
    contact = _contact(state, params["InstanceId"], params["ContactId"])
    token = params.get("ClientToken")
    if token and token in contact.screen_sharing_tokens:
        return {}  # an idempotent replay: already started with this token
    refusal = state.center.screen_sharing_refusal(contact)
    if refusal is not None:
        raise ApiError("InvalidRequestException", refusal)
    state.center.start_screen_sharing(contact, token, state.clock())
    return {}


def get_contact_metrics(state: EmulatorState, params: dict[str, Any]) -> dict[str, Any]:
    """POSITION_IN_QUEUE and ESTIMATED_WAIT_TIME while the contact is in queue; before queueing
    and after an agent took it (or it ended), InvalidRequestException, as Connect answers."""
    if state.config.metrics_access_denied:
        raise ApiError(
            "AccessDeniedException",
            "User is not authorized to perform: connect:GetContactMetrics (injected fault).",
        )
    # The model's pattern admits an id behind an instance ARN prefix: the id is the last part.
    contact = _contact(state, params["InstanceId"], str(params["ContactId"]).rpartition("/")[2])
    contact.metrics_calls += 1
    now = state.clock()
    position = state.center.position(contact)
    if position is None:
        raise ApiError(
            "InvalidRequestException",
            f"Contact {contact.id} is not in queue: metrics are only available while the "
            "contact is actively in queue.",
        )
    values = {
        "POSITION_IN_QUEUE": float(position),
        "ESTIMATED_WAIT_TIME": round(state.center.estimated_wait_s(contact, position, now), 3),
    }
    return {
        "MetricResults": [
            {"Name": m["Name"], "Value": {"Number": values[m["Name"]]}}
            for m in params["Metrics"]
            if m.get("Name") in values
        ],
        "Id": contact.id,
        "Arn": contact.arn,
    }


def stop_contact(state: EmulatorState, params: dict[str, Any]) -> dict[str, Any]:
    _known_instance(state, params["InstanceId"])
    if params.get("DisconnectReason") is not None:
        raise ApiError(
            "InvalidRequestException",
            "DisconnectReason is only supported for contacts of outbound campaigns.",
        )
    contact = state.center.contacts.get(params["ContactId"])
    if (
        contact is None
        or contact.instance_id != params["InstanceId"]
        or not state.center.stop_contact(contact, state.clock())
    ):
        message = f"Contact {params['ContactId']} is not active or does not exist."
        raise ApiError("ContactNotFoundException", message)
    return {}


# -- control API ----------------------------------------------------------------------------


async def stats_endpoint(request: web.Request) -> web.Response:
    state = request.app[STATE]
    contacts = state.center.contacts.values()
    return web.json_response(
        {
            "operations": {op: {o: s[o] for o in OUTCOMES} for op, s in state.stats.items()},
            "contacts": sum(1 for c in contacts if not c.background),
            "contacts_stopped": sum(c.stopped_at is not None for c in contacts),
            "stopped_with_agent": sum(c.stopped_with_agent for c in contacts),
            **state.publisher.stats(),
        }
    )


async def contacts_endpoint(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.center.advance(state.clock())
    contacts = state.center.contacts.values()
    return web.json_response(
        {
            "Contacts": [c.ground_truth() for c in contacts if not c.background],
            "Background": [c.ground_truth() for c in contacts if c.background],
        }
    )


async def positions_endpoint(request: web.Request) -> web.Response:
    """Every waiting contact's true position now (ours and other applications'), by id."""
    state = request.app[STATE]
    now = state.clock()
    state.center.advance(now)
    positions = {c.id: state.center.position(c) for c in state.center.contacts.values()}
    return web.json_response(
        {"At": now, "Positions": {cid: p for cid, p in positions.items() if p is not None}}
    )


async def background_endpoint(request: web.Request) -> web.Response:
    """`{"contacts": N}`: N contacts of other applications join the queue now."""
    state = request.app[STATE]
    body = await request.json()
    count = body.get("contacts") if isinstance(body, dict) else None
    if not isinstance(count, int) or count < 0:
        raise web.HTTPBadRequest(text=json.dumps({"Message": "contacts must be an int >= 0"}))
    if not state.config.contact_center_model:
        raise web.HTTPBadRequest(
            text=json.dumps({"Message": "background contacts need the contact-center model"})
        )
    added = state.center.add_background(count, state.clock())
    state.wakeup.set()
    return web.json_response({"ContactIds": [c.id for c in added]})


def _control_contact(request: web.Request) -> Contact:
    state = request.app[STATE]
    contact = state.center.contacts.get(request.match_info["contact_id"])
    if contact is None:
        raise web.HTTPNotFound(text=json.dumps({"Message": "Contact not found"}))
    return contact


def forcing_endpoint(
    force: Callable[[ContactCenter, Contact, float], bool],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A control endpoint that forces one transition of the contact in its path."""

    async def endpoint(request: web.Request) -> web.Response:
        state = request.app[STATE]
        contact = _control_contact(request)
        changed = force(state.center, contact, state.clock())
        state.wakeup.set()
        return web.json_response({"changed": changed, "contact": contact.ground_truth()})

    return endpoint


connect_agent_endpoint = forcing_endpoint(ContactCenter.force_connect)
disconnect_endpoint = forcing_endpoint(ContactCenter.force_disconnect)


async def hold_endpoint(request: web.Request) -> web.Response:
    state = request.app[STATE]
    contact = _control_contact(request)
    changed = state.center.hold(contact, state.clock())
    state.wakeup.set()
    return web.json_response({"changed": changed, "contact": contact.ground_truth()})


async def faults_endpoint(request: web.Request) -> web.Response:
    """`{"operation": "DescribeContact", "code": "InternalServiceException", "times": 2,
    "after": 1}`: after the operation's next `after` calls, `times` calls (past
    authentication) answer that error (queued behind what was injected before)."""
    state = request.app[STATE]
    try:
        body = await request.json()
        operation, code = body["operation"], body["code"]
        times, after = int(body.get("times", 1)), int(body.get("after", 0))
    except (ValueError, KeyError, TypeError) as exc:
        raise web.HTTPBadRequest(text=json.dumps({"Message": str(exc)})) from exc
    if operation not in OPERATIONS or code not in ERROR_STATUS or times < 1 or after < 0:
        message = f"unknown operation or error code, times < 1 or after < 0: {body}"
        raise web.HTTPBadRequest(text=json.dumps({"Message": message}))
    state.injected.setdefault(operation, deque()).extend([None] * after + [code] * times)
    return web.json_response({op: list(codes) for op, codes in state.injected.items()})


async def reset_endpoint(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"reset": True})


async def config_endpoint(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if request.method == "POST":
        try:
            state.config = state.config.patched(await request.json())
        except (ValueError, TypeError) as exc:
            raise web.HTTPBadRequest(text=json.dumps({"Message": str(exc)})) from exc
        state.center.background_started(state.clock())
        state.wakeup.set()
    return web.json_response(state.config.describe())


async def _simulation(app: web.Application) -> AsyncIterator[None]:
    """Apply scheduled transitions on time (for contact events) and ship contact events."""
    state = app[STATE]

    async def tick() -> None:
        while True:
            state.wakeup.clear()
            now = state.clock()
            state.center.advance(now)
            due = state.center.next_event_time()
            state.next_wake = due
            timeout = None if due is None else max(0.0, due - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.wakeup.wait(), timeout)

    tasks = [
        asyncio.create_task(tick(), name="emulator.simulation"),
        asyncio.create_task(state.publisher.run(), name="emulator.contact_events"),
    ]
    for task in tasks:
        task.add_done_callback(_report_crash)
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _report_crash(task: asyncio.Task[None]) -> None:
    """The background tasks run until shutdown; one that ends early is a bug worth a loud log."""
    if not task.cancelled() and task.exception() is not None:
        log.error("emulator.task_crashed", task=task.get_name(), error=repr(task.exception()))


def create_app(state: EmulatorState) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024, middlewares=[unknown_routes_in_wire_format])
    app[STATE] = state
    app.router.add_put(
        "/contact/webrtc", connect_operation("StartWebRTCContact", start_webrtc_contact)
    )
    app.router.add_get(
        "/contacts/{InstanceId}/{ContactId}", connect_operation("DescribeContact", describe_contact)
    )
    app.router.add_put(
        "/contact/screen-sharing", connect_operation("StartScreenSharing", start_screen_sharing)
    )
    app.router.add_post(
        "/metrics/contact", connect_operation("GetContactMetrics", get_contact_metrics)
    )
    app.router.add_post("/contact/stop", connect_operation("StopContact", stop_contact))
    app.router.add_get("/_emulator/stats", stats_endpoint)
    app.router.add_get("/_emulator/contacts", contacts_endpoint)
    app.router.add_get("/_emulator/positions", positions_endpoint)
    app.router.add_post("/_emulator/background", background_endpoint)
    app.router.add_post("/_emulator/contacts/{contact_id}/connect-agent", connect_agent_endpoint)
    app.router.add_post("/_emulator/contacts/{contact_id}/disconnect", disconnect_endpoint)
    app.router.add_post("/_emulator/contacts/{contact_id}/hold", hold_endpoint)
    app.router.add_post("/_emulator/faults", faults_endpoint)
    app.router.add_post("/_emulator/reset", reset_endpoint)
    app.router.add_get("/_emulator/config", config_endpoint)
    app.router.add_post("/_emulator/config", config_endpoint)
    app.cleanup_ctx.append(_simulation)
    return app
