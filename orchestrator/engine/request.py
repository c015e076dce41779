"""Call requests: parsing queue message bodies, validating them as Connect would, client tokens.

A body is a JSON object mirroring StartWebRTCContact plus `RequestId` and `ScreenSharing`, raw or
wrapped in an SNS Notification envelope. Validation applies the limits Connect enforces, so a
request that would be refused by Connect is rejected here, with every problem named by field, and
never reaches Connect.

The same queue carries cancels: `{"Action": "cancel", "RequestId": "...", "ContactId": "..."}`
(`ContactId` optional). `Action` defaults to "start", a call request; `parse_message` returns one
or the other. A message with any other action, or a cancel that is not valid, is rejected without
naming a request to tell (`CancelRejected`): the request it names may be live, and a rejection
must never become its final event.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_pascal

from orchestrator.bounds import declared
from orchestrator.engine.reply_to import ReplyToPolicy, queue_url_problem

#: Bodies larger than this are refused before parsing (SQS itself allows up to 1 MiB).
MAX_BODY_BYTES = 1024 * 1024
ATTRIBUTES_MAX_BYTES = 32_768
REFERENCES_MAX_BYTES = 4_096
#: A rejection lists at most this many problems, each clipped, so that its `request.rejected`
#: event fits in every sink (SQS, SNS and EventBridge refuse entries over 256 KB, batches too)
#: whatever the body held: tens of thousands of unknown keys, a key of 200,000 characters.
MAX_FIELD_ERRORS = 20
_MAX_ERROR_TEXT = 200
# Matched with `fullmatch`: `$` would also accept a trailing newline.
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_ATTRIBUTE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOKEN_NAMESPACE = uuid.UUID("0f8c1b1e-5a7d-4d56-9a8e-6a2f3f0c4b21")

ReferenceType = Literal[
    "URL",
    "ATTACHMENT",
    "CONTACT_ANALYSIS",
    "NUMBER",
    "STRING",
    "DATE",
    "EMAIL",
    "EMAIL_MESSAGE",
    "EMAIL_MESSAGE_PLAIN_TEXT",
    "EMAIL_MESSAGE_PLAIN_TEXT_REDACTED",
    "EMAIL_MESSAGE_REDACTED",
]


def _utf8(value: str) -> str:
    """Refuse strings that cannot be sent as UTF-8 (lone surrogates from `\\ud800` escapes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid UTF-8 text (found an unpaired surrogate)") from exc
    return value


def _request_id(value: str) -> str:
    if not _REQUEST_ID.fullmatch(value):
        raise ValueError("must be 1-128 characters: letters, digits, '-', '_', '.' or ':'")
    return value


def _queue_url(value: str) -> str:
    problem = queue_url_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _within_budget(pairs: Iterable[tuple[str, str]], limit: int) -> None:
    """Refuse keys and values that take more than `limit` UTF-8 bytes together."""
    size = sum(len(k.encode()) + len(v.encode()) for k, v in pairs)
    if size > limit:
        raise ValueError(f"{size} UTF-8 bytes in total, over the {limit} limit")


Utf8 = AfterValidator(_utf8)


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_pascal,
        populate_by_name=True,
        extra="forbid",
        strict=True,
        frozen=True,
    )


class ParticipantDetails(_Model):
    display_name: Annotated[str, StringConstraints(min_length=1, max_length=256), Utf8]


class ParticipantCapabilities(_Model):
    video: Literal["SEND"] | None = None
    screen_share: Literal["SEND"] | None = None


class AllowedCapabilities(_Model):
    customer: ParticipantCapabilities | None = None
    agent: ParticipantCapabilities | None = None


class Reference(_Model):
    value: Annotated[str, StringConstraints(max_length=4096), Utf8] | None = None
    type: ReferenceType


#: The AllowedCapabilities a request that wants screen sharing gets when it sets none: screen
#: sharing from both sides (Connect allows it only when both may send it), nothing else.
SCREEN_SHARING_CAPABILITIES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {"Customer": {"ScreenShare": "SEND"}, "Agent": {"ScreenShare": "SEND"}}
)


class CallRequest(_Model):
    """One validated call request. Field names are snake_case; the JSON uses PascalCase.

    A request that asks for screen sharing (the default) and sets no `AllowedCapabilities` is
    given `SCREEN_SHARING_CAPABILITIES`, so that screen sharing can start; one that sets them is
    sent to Connect as it is.
    """

    request_id: Annotated[str, AfterValidator(_request_id)]
    instance_id: Annotated[str, StringConstraints(min_length=1, max_length=100), Utf8]
    contact_flow_id: Annotated[str, StringConstraints(min_length=1, max_length=500), Utf8]
    participant_details: ParticipantDetails
    attributes: (
        dict[
            Annotated[str, StringConstraints(min_length=1, max_length=32767), Utf8],
            Annotated[str, StringConstraints(max_length=32767), Utf8],
        ]
        | None
    ) = None
    allowed_capabilities: AllowedCapabilities | None = None
    references: (
        dict[Annotated[str, StringConstraints(min_length=1, max_length=4096), Utf8], Reference]
        | None
    ) = None
    description: Annotated[str, StringConstraints(max_length=4096), Utf8] | None = None
    related_contact_id: (
        Annotated[str, StringConstraints(min_length=1, max_length=256), Utf8] | None
    ) = None
    screen_sharing: bool = True
    #: The producer's own shelf life for the request (ISO-8601 with a time zone, e.g. UTC "Z"):
    #: past it, a request not yet started ends with `request.expired`.
    expires_at: datetime | None = Field(default=None, strict=False)
    #: An SQS queue URL the request's events also go to (when `[events] reply_to_allowed`
    #: allows it: `engine.reply_to`).
    reply_to: Annotated[str, AfterValidator(_queue_url)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _screen_sharing_capabilities(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        wants = data.get("ScreenSharing", data.get("screen_sharing", True)) is True
        key = "allowed_capabilities" if "allowed_capabilities" in data else "AllowedCapabilities"
        if not wants or data.get(key) is not None:
            return data
        return {**data, key: {side: dict(c) for side, c in SCREEN_SHARING_CAPABILITIES.items()}}

    @field_validator("expires_at", mode="before")
    @classmethod
    def _iso_text(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValueError("must be an ISO-8601 time string, e.g. 2026-01-01T12:00:00Z")
        return value

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.utcoffset() is None:
            raise ValueError("must be an ISO-8601 time with a time zone, e.g. 2026-01-01T12:00:00Z")
        return value

    @field_validator("attributes")
    @classmethod
    def _attributes_budget(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            for key in value:
                if not _ATTRIBUTE_KEY.fullmatch(key):
                    raise ValueError(
                        f"key {key[:64]!r} may contain only letters, digits, '-' and '_'"
                    )
            _within_budget(value.items(), ATTRIBUTES_MAX_BYTES)
        return value

    @field_validator("references")
    @classmethod
    def _references_budget(cls, value: dict[str, Reference] | None) -> dict[str, Reference] | None:
        if value is not None:
            _within_budget(((k, r.value or "") for k, r in value.items()), REFERENCES_MAX_BYTES)
        return value

    def start_webrtc_contact_params(self, client_token: str) -> dict[str, Any]:
        """The StartWebRTCContact parameters for this request."""
        params = self.model_dump(
            by_alias=True,
            exclude_none=True,
            exclude={"request_id", "screen_sharing", "expires_at", "reply_to"},
        )
        params["ClientToken"] = client_token
        return params


@dataclass(frozen=True)
class RequestDefaults:
    """What requests may leave out, and which instances and flows they may use (from `[connect]`
    in the configuration; an empty allow-list allows any)."""

    instance_id: str | None = declared(
        None, "The Connect instance of requests that leave out InstanceId."
    )
    contact_flow_id: str | None = declared(
        None, "The contact flow of requests that leave out ContactFlowId."
    )
    allowed_instance_ids: frozenset[str] = declared(
        frozenset(),
        "Instances requests may use; a request naming another one is rejected. Empty: any "
        "(then only the IAM policy limits them).",
    )
    allowed_contact_flow_ids: frozenset[str] = declared(
        frozenset(),
        "Contact flows requests may use; a request naming another one is rejected. Empty: any.",
    )
    #: The reply queues requests may name (`[events] reply_to_allowed`).
    reply_to: ReplyToPolicy = field(default_factory=ReplyToPolicy)

    def refusals(self, request: CallRequest) -> list[FieldError]:
        """Why `request` may not use its instance or flow (empty: it may)."""
        refused = []
        if self.allowed_instance_ids and request.instance_id not in self.allowed_instance_ids:
            refused.append(FieldError("InstanceId", "not an instance this worker may use"))
        flows = self.allowed_contact_flow_ids
        if flows and request.contact_flow_id not in flows:
            refused.append(FieldError("ContactFlowId", "not a contact flow this worker may use"))
        if request.reply_to is not None:
            problem = self.reply_to.refusal(request.reply_to)
            if problem:
                refused.append(FieldError("ReplyTo", problem))
        return refused

    def reply_queue(self, document: Any) -> str | None:
        """The document's ReplyTo if it is a reply queue this worker may write to, else None
        (a rejection goes there only then)."""
        value = document.get("ReplyTo") if isinstance(document, dict) else None
        if isinstance(value, str) and self.reply_to.refusal(value) is None:
            return value
        return None


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class RequestRejected(ValueError):
    """A message body is not a valid call request. `request_id` is set when one could be read
    (its `request.rejected` goes to that request)."""

    what = "call request"

    def __init__(
        self,
        errors: list[FieldError],
        request_id: str | None = None,
        *,
        reply_to: str | None = None,
    ) -> None:
        summary = "; ".join(f"{e.field}: {e.message}" for e in errors[:5])
        super().__init__(f"invalid {self.what}: {summary}")
        self.errors = errors
        self.request_id = request_id
        #: The request's reply queue, when it names one it may use (its rejection goes there).
        self.reply_to = reply_to


class CancelRejected(RequestRejected):
    """A message that is not a call request and not a valid cancel. No event goes to the request
    it `names` (that request may be live): `request_id` is None."""

    what = "cancel"

    def __init__(self, errors: list[FieldError], names: str | None = None) -> None:
        super().__init__(errors, None)
        self.names = names


class CancelRequest(_Model):
    """A cancel: the requester no longer wants the call of `request_id` (the customer closed the
    app). `contact_id`, when the requester knows it from `contact.started`, lets a worker that
    does not hold the request stop the contact; `instance_id` defaults to `[connect]
    instance_id`."""

    action: Literal["cancel"]
    request_id: Annotated[str, AfterValidator(_request_id)]
    contact_id: Annotated[str, StringConstraints(min_length=1, max_length=256), Utf8] | None = None
    instance_id: Annotated[str, StringConstraints(min_length=1, max_length=100), Utf8] | None = None


def cancel_document(
    request_id: str, *, contact_id: str | None = None, instance_id: str | None = None
) -> dict[str, str]:
    """The cancel message for `request_id` as a requester sends it (`CancelRequest` on the wire):
    naming the contact (and its instance) lets any worker stop it."""
    document = {"Action": "cancel", "RequestId": request_id}
    for key, value in (("ContactId", contact_id), ("InstanceId", instance_id)):
        if value is not None:
            document[key] = value
    return document


def client_token(request_id: str, purpose: Literal["start", "screen-sharing"]) -> str:
    """The ClientToken for one Connect call of one request: the same on every redelivery."""
    return str(uuid.uuid5(_TOKEN_NAMESPACE, f"{purpose}:{request_id}"))


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:64]!r}")
        result[key] = value
    return result


def _load_json(text: str, what: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise RequestRejected([FieldError(what, "JSON nested too deeply")]) from None
    except ValueError as exc:
        raise RequestRejected([FieldError(what, f"not valid JSON: {exc}")]) from None


def _unwrap_sns(document: Any) -> Any:
    """If `document` is an SNS Notification envelope, the JSON inside its `Message`."""
    if (
        isinstance(document, dict)
        and document.get("Type") == "Notification"
        and "TopicArn" in document
        and "Message" in document
    ):
        message = document["Message"]
        if not isinstance(message, str):
            raise RequestRejected([FieldError("Message", "SNS Message must be a string")])
        return _load_json(message, "Message")
    return document


def readable_request_id(document: Any) -> str | None:
    """The document's RequestId if it is usable as an event id, else None."""
    if isinstance(document, dict):
        candidate = document.get("RequestId")
        if isinstance(candidate, str) and _REQUEST_ID.fullmatch(candidate):
            return candidate
    return None


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in {"[key]"}:
            path += " (key)"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _document(body: str | bytes) -> dict[str, Any]:
    """The JSON object of one message body (unwrapped from SNS), or `RequestRejected`."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if len(raw) > MAX_BODY_BYTES:
        raise RequestRejected([FieldError("body", f"{len(raw)} bytes, over {MAX_BODY_BYTES}")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestRejected([FieldError("body", f"not valid UTF-8: {exc.reason}")]) from None
    document = _unwrap_sns(_load_json(text, "body"))
    if not isinstance(document, dict):
        raise RequestRejected(
            [FieldError("body", f"must be a JSON object, got {type(document).__name__}")]
        )
    return document


def _errors(exc: ValidationError) -> list[FieldError]:
    return _bounded(
        [FieldError(_field_path(tuple(err["loc"])), _message(err)) for err in exc.errors()]
    )


def parse_message(
    body: str | bytes, defaults: RequestDefaults | None = None
) -> CallRequest | CancelRequest:
    """Parse and validate one message body: a call request (`Action` "start", the default) or
    a cancel. Raises `RequestRejected` naming every bad field (`CancelRejected` for anything
    that is not a call request)."""
    defaults = defaults or RequestDefaults()
    document = _document(body)
    action = document.get("Action", "start")
    if action == "start":
        return _call_request({k: v for k, v in document.items() if k != "Action"}, defaults)
    names = readable_request_id(document)
    if action != "cancel":
        detail = 'unknown action: "start" (the default) or "cancel"'
        raise CancelRejected([FieldError("Action", detail)], names)
    try:
        cancel = CancelRequest.model_validate(document, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise CancelRejected(_errors(exc), names) from None
    instance = cancel.instance_id or defaults.instance_id
    if cancel.contact_id is not None and instance is None:
        required = "required with ContactId (and no default is configured)"
        raise CancelRejected([FieldError("InstanceId", required)], names)
    allowed = defaults.allowed_instance_ids
    if instance is not None and allowed and instance not in allowed:
        instance_refused = "not an instance this worker may use"
        raise CancelRejected([FieldError("InstanceId", instance_refused)], names)
    return cancel.model_copy(update={"instance_id": instance})


def parse_request(body: str | bytes, defaults: RequestDefaults | None = None) -> CallRequest:
    """Parse and validate one call request. Raises `RequestRejected` naming every bad field (a
    cancel is rejected too, without naming its request)."""
    parsed = parse_message(body, defaults)
    if isinstance(parsed, CancelRequest):
        raise CancelRejected([FieldError("Action", "a cancel, not a call request")])
    return parsed


def _call_request(document: dict[str, Any], defaults: RequestDefaults) -> CallRequest:
    request_id = readable_request_id(document)
    merged = dict(document)
    for key, fallback in (
        ("InstanceId", defaults.instance_id),
        ("ContactFlowId", defaults.contact_flow_id),
    ):
        if merged.get(key) is None and fallback:
            merged[key] = fallback
    try:
        # By alias only: the Python field names (`request_id`, ...) are not the wire format.
        request = CallRequest.model_validate(merged, by_alias=True, by_name=False)
    except ValidationError as exc:
        reply_to = defaults.reply_queue(document) if request_id else None
        raise RequestRejected(_errors(exc), request_id, reply_to=reply_to) from None
    refused = defaults.refusals(request)
    if refused:
        reply_to = defaults.reply_queue(document)
        raise RequestRejected(refused, request_id, reply_to=reply_to)
    return request


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 1] + "…"


def _bounded(errors: list[FieldError]) -> list[FieldError]:
    """At most `MAX_FIELD_ERRORS` problems, each clipped; the last one counts those left out."""
    clipped = [FieldError(_clip(e.field), _clip(e.message)) for e in errors]
    if len(clipped) <= MAX_FIELD_ERRORS:
        return clipped
    hidden = len(clipped) - (MAX_FIELD_ERRORS - 1)
    return [
        *clipped[: MAX_FIELD_ERRORS - 1],
        FieldError("body", f"{hidden} more problems not listed"),
    ]


def _message(err: Mapping[str, Any]) -> str:
    if err["type"] == "missing":
        field = err["loc"][-1] if err["loc"] else "value"
        if field in {"InstanceId", "ContactFlowId"}:
            return "required (and no default is configured)"
        return "required"
    if err["type"] == "extra_forbidden":
        return "unknown field"
    return str(err["msg"]).removeprefix("Value error, ")
