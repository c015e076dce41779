"""Hypothesis strategies for hostile message bodies, each with the RequestId a parser must report.

A `Poison` is a body that is *not* a valid call request, built so that its expected outcome is
known by construction: `request_id` is the RequestId the parser can read from it (so the rejection
can be reported as a `request.rejected` event), or None when no usable one can be read (not JSON,
not an object, invalid UTF-8, too large, too deep, duplicate keys, or the RequestId itself is the
problem).

Layers, outermost last:

1. a valid request document, then one to three *corruptions* of it (a missing or mistyped field,
   an oversize string, an attribute map over Connect's byte budget or with a bad key, a bad
   reference or capability, an unknown field such as a snake_case alias or "CallbackUrl", a lone
   surrogate inside a string);
2. optionally a *JSON-level* corruption of its text (duplicate key, nesting too deep, an integer
   too long to convert, trailing garbage, a byte-order mark, a truncation);
3. optionally an SNS Notification envelope around it (or around garbage);
4. optionally (parser level only) a *body-level* corruption: invalid UTF-8 bytes, raw unpaired
   surrogates, a body over 1 MiB.

`sqs_poison()` keeps to what can travel through SQS: ASCII text (JSON escapes stand for everything
else, including `\\ud800`), under 256 KB.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args

from hypothesis import strategies as st

from orchestrator.engine.request import MAX_BODY_BYTES, ReferenceType
from orchestrator.testing.poison import Poison
from orchestrator.testing.requests import request_document

#: SQS's own limit on a message (moto allows 1 MiB; real queues default to 256 KiB).
SQS_BODY_LIMIT = 256 * 1024

FIELDS = (
    "RequestId",
    "InstanceId",
    "ContactFlowId",
    "ParticipantDetails",
    "Attributes",
    "AllowedCapabilities",
    "References",
    "Description",
    "RelatedContactId",
    "ScreenSharing",
)
#: The Python names of the fields: not part of the wire format, so unknown fields too.
SNAKE_NAMES = {
    "RequestId": "request_id",
    "InstanceId": "instance_id",
    "ContactFlowId": "contact_flow_id",
    "ParticipantDetails": "participant_details",
    "Description": "description",
    "ScreenSharing": "screen_sharing",
}
STRING_FIELDS = ("RequestId", "InstanceId", "ContactFlowId", "Description", "RelatedContactId")
REQUIRED = ("RequestId", "InstanceId", "ContactFlowId", "ParticipantDetails")
#: (field, shortest invalid length) of the length-limited strings.
LENGTH_LIMITS = (
    ("InstanceId", 101),
    ("ContactFlowId", 501),
    ("Description", 4097),
    ("RelatedContactId", 257),
    ("ParticipantDetails.DisplayName", 257),
)
#: Fields that must not be empty.
NON_EMPTY = ("InstanceId", "ContactFlowId", "RelatedContactId", "ParticipantDetails.DisplayName")
ROUTING_FIELDS = ("EventsQueueUrl", "Destination", "CallbackUrl", "Sinks", "ReplyTo", "TopicArn")

valid_request_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,128}", fullmatch=True)


def valid_document(request_id: str) -> dict[str, Any]:
    """A valid request using every optional field."""
    return request_document(
        request_id,
        ParticipantDetails={"DisplayName": "Jane Doe"},
        Attributes={"order": "1234", "channel-name": "app"},
        References={"ticket": {"Value": "https://tickets.example/1234", "Type": "URL"}},
        Description="Billing question",
        RelatedContactId="e619cfeb-55fd-4cdd-9eaa-14e2a0791b22",
        ScreenSharing=True,
    )


@dataclass(frozen=True)
class Corruption:
    label: str
    apply: Callable[[dict[str, Any]], None]
    #: True when it makes the RequestId unreadable.
    hides_request_id: bool = False
    #: True when it puts unpaired surrogates into the document.
    surrogates: bool = False


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = doc
        for part in parents:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[last] = value

    return apply


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for part in parents:
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target.pop(last, None)

    return apply


def _rename(old: str, new: str) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        if old in doc:
            doc[new] = doc.pop(old)
        else:
            doc[new] = "x"

    return apply


# -- document corruptions ------------------------------------------------------------------------

_scalars = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
_containers = st.one_of(
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@st.composite
def missing_field(draw: st.DrawFn) -> Corruption:
    # RequestId last: Hypothesis favours early choices, and this one hides the id.
    path = draw(st.sampled_from(["ParticipantDetails.DisplayName", *REQUIRED[::-1]]))
    return Corruption(f"missing {path}", _delete(path), hides_request_id=path == "RequestId")


@st.composite
def wrong_type(draw: st.DrawFn) -> Corruption:
    name = draw(st.sampled_from([*FIELDS, "ParticipantDetails.DisplayName"]))
    if name in (*STRING_FIELDS, "ParticipantDetails.DisplayName"):
        wrong = st.one_of(_scalars, _containers)
    elif name == "ScreenSharing":
        wrong = st.one_of(
            st.none(), st.text(max_size=5), st.integers(), st.lists(st.booleans(), max_size=2)
        )
    else:  # a map or an object
        wrong = st.one_of(_scalars, st.text(max_size=8), st.lists(st.integers(), max_size=3))
    value = draw(wrong if name not in REQUIRED else st.one_of(st.none(), wrong))
    return Corruption(
        f"{name} = {value!r:.40}", _set(name, value), hides_request_id=name == "RequestId"
    )


@st.composite
def bad_length(draw: st.DrawFn) -> Corruption:
    if draw(st.booleans()):
        path = draw(st.sampled_from(NON_EMPTY))
        return Corruption(f"empty {path}", _set(path, ""))
    path, shortest = draw(st.sampled_from(LENGTH_LIMITS))
    length = draw(
        st.one_of(
            st.integers(shortest, shortest + 50), st.integers(shortest, max(shortest * 20, 60_000))
        )
    )
    char = draw(st.sampled_from(["x", "é", "€", "😀"]))
    return Corruption(f"{path} of {length} chars", _set(path, char * length))


@st.composite
def bad_request_id(draw: st.DrawFn) -> Corruption:
    valid = draw(valid_request_ids)
    value = draw(
        st.one_of(
            st.just(""),
            st.just(valid + "\n"),  # `$` in a regex matches before a final newline
            st.integers(129, 400).map(lambda n: "r" * n),
            st.tuples(
                st.integers(0, len(valid)), st.sampled_from(list(" /\t\n#@+é,;!\u00a0\u200b"))
            ).map(lambda p: valid[: p[0]] + p[1] + valid[p[0] :]),
        )
    )
    return Corruption(f"RequestId = {value!r:.40}", _set("RequestId", value), hides_request_id=True)


@st.composite
def attributes_over_budget(draw: st.DrawFn) -> Corruption:
    """Keys and values each within their length, the total over 32,768 UTF-8 bytes."""
    char = draw(st.sampled_from(["a", "é", "€", "😀"]))
    width = len(char.encode())
    total = draw(st.one_of(st.just(32_769), st.integers(32_769, 120_000)))
    attributes: dict[str, str] = {}
    remaining = total
    index = 0
    while remaining > 0:
        key = f"k{index}"
        room = min(32_767, max(1, (remaining - len(key)) // width + 1))
        attributes[key] = char * room
        remaining -= len(key) + room * width
        index += 1
    return Corruption(f"Attributes of {total}+ bytes in {char!r}", _set("Attributes", attributes))


@st.composite
def bad_attribute(draw: st.DrawFn) -> Corruption:
    key = draw(
        st.one_of(
            st.just(""),
            st.just("order\n"),
            st.sampled_from(["with space", "dotted.key", "ключ", "a/b", "ok\u200b"]),
            st.text(min_size=1, max_size=12).filter(
                lambda k: any(c not in string.ascii_letters + string.digits + "-_" for c in k)
            ),
        )
    )
    if draw(st.booleans()):
        return Corruption(f"attribute key {key!r}", _set("Attributes", {key: "v"}))
    value = draw(st.one_of(_scalars, st.none(), _containers))
    return Corruption(f"attribute value {value!r:.30}", _set("Attributes", {"k": value}))


@st.composite
def bad_references(draw: st.DrawFn) -> Corruption:
    kind = draw(st.sampled_from(["type", "missing type", "too long", "over budget", "value type"]))
    refs: dict[str, Any]
    if kind == "type":
        bad = draw(st.text(max_size=12).filter(lambda t: t not in get_args(ReferenceType)))
        refs = {"r": {"Value": "v", "Type": bad}}
    elif kind == "missing type":
        refs = {"r": {"Value": "v"}}
    elif kind == "too long":
        refs = {"r": {"Value": "v" * draw(st.integers(4097, 20_000)), "Type": "STRING"}}
    elif kind == "over budget":
        refs = {f"r{i}": {"Value": "v" * 1500, "Type": "STRING"} for i in range(3)}
    else:
        refs = {"r": {"Value": draw(_scalars), "Type": "STRING"}}
    return Corruption(f"References {kind}", _set("References", refs))


@st.composite
def bad_capabilities(draw: st.DrawFn) -> Corruption:
    side = draw(st.sampled_from(["Customer", "Agent"]))
    kind = draw(st.sampled_from(["value", "extra side", "extra key", "side type"]))
    caps: dict[str, Any] = {"Customer": {"ScreenShare": "SEND"}, "Agent": {"ScreenShare": "SEND"}}
    if kind == "value":
        caps[side] = {
            draw(st.sampled_from(["Video", "ScreenShare"])): draw(
                st.sampled_from(["RECEIVE", "send", "", "SEND ", "NONE"])
            )
        }
    elif kind == "extra side":
        caps["Supervisor"] = {"Video": "SEND"}
    elif kind == "extra key":
        caps[side] = {"ScreenShare": "SEND", "Audio": "SEND"}
    else:
        caps[side] = ["SEND"]
    return Corruption(f"AllowedCapabilities {kind}", _set("AllowedCapabilities", caps))


@st.composite
def unknown_field(draw: st.DrawFn) -> Corruption:
    kind = draw(st.sampled_from(["routing", "snake_case", "case", "nested", "any"]))
    value = draw(st.one_of(st.none(), st.text(max_size=20), st.integers()))
    if kind == "routing":
        name = draw(st.sampled_from(ROUTING_FIELDS))
        return Corruption(f"unknown {name}", _set(name, "https://attacker.example/hook"))
    if kind == "snake_case":
        pascal, snake = draw(st.sampled_from(sorted(SNAKE_NAMES.items())))
        return Corruption(
            f"{pascal} spelt {snake}",
            _rename(pascal, snake),
            hides_request_id=pascal == "RequestId",
        )
    if kind == "case":
        name = draw(st.sampled_from(["requestId", "REQUESTID", "Instanceid", "screensharing"]))
        return Corruption(f"unknown {name}", _set(name, value))
    if kind == "nested":
        path = draw(
            st.sampled_from(
                ["ParticipantDetails.Email", "AllowedCapabilities.Customer.Audio", "X.Y"]
            )
        )
        return Corruption(f"unknown {path}", _set(path, "x"))
    name = draw(st.text(min_size=1, max_size=30).filter(lambda k: k not in FIELDS))
    return Corruption(f"unknown {name!r}", _set(name, value))


@st.composite
def lone_surrogate(draw: st.DrawFn) -> Corruption:
    surrogate = draw(st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"]))
    where = draw(
        st.sampled_from(
            [
                "RequestId",
                "InstanceId",
                "ContactFlowId",
                "ParticipantDetails.DisplayName",
                "Description",
                "RelatedContactId",
                "Attributes",
                "attribute key",
                "References",
            ]
        )
    )
    text = f"ok{surrogate}ok"
    if where == "Attributes":
        return Corruption(
            "surrogate in attribute", _set("Attributes", {"k": text}), surrogates=True
        )
    if where == "attribute key":
        return Corruption("surrogate in key", _set("Attributes", {text: "v"}), surrogates=True)
    if where == "References":
        refs = {"r": {"Value": text, "Type": "STRING"}}
        return Corruption("surrogate in reference", _set("References", refs), surrogates=True)
    return Corruption(
        f"surrogate in {where}",
        _set(where, text),
        hides_request_id=where == "RequestId",
        surrogates=True,
    )


corruptions = st.one_of(
    missing_field(),
    wrong_type(),
    bad_length(),
    bad_request_id(),
    attributes_over_budget(),
    bad_attribute(),
    bad_references(),
    bad_capabilities(),
    unknown_field(),
    lone_surrogate(),
)


@dataclass(frozen=True)
class Text:
    """A body as JSON text (ASCII unless `surrogates` says raw ones were kept), and its verdict."""

    text: str
    request_id: str | None
    recipe: tuple[str, ...]


@st.composite
def corrupted_documents(draw: st.DrawFn) -> Text:
    request_id = draw(valid_request_ids)
    document = valid_document(request_id)
    applied = draw(st.lists(corruptions, min_size=1, max_size=3))
    for corruption in applied:
        corruption.apply(document)
    hidden = any(c.hides_request_id for c in applied)
    return Text(
        json.dumps(document),  # ensure_ascii: unpaired surrogates travel as \ud800 escapes
        None if hidden else request_id,
        tuple(c.label for c in applied),
    )


# -- JSON-level corruptions ----------------------------------------------------------------------


@st.composite
def broken_json(draw: st.DrawFn, inner: Text) -> Text:
    """`inner` made unparseable as JSON: no RequestId can be read any more."""
    text = inner.text
    kind = draw(
        st.sampled_from(
            ["duplicate", "nested duplicate", "deep", "big int", "trailing", "bom", "truncated"]
        )
    )
    if kind == "duplicate":
        key = draw(st.sampled_from(["RequestId", "InstanceId", "ScreenSharing", "Zzz"]))
        first = draw(st.sampled_from(['"shadow"', "1", "null"]))
        # The duplicate sits first so that a parser keeping the last value would see a valid one.
        broken = '{"%s": %s, "%s": %s, ' % (key, first, key, first) + text[1:]  # noqa: UP031
    elif kind == "nested duplicate":
        broken = text.replace(
            '"ParticipantDetails": {', '"ParticipantDetails": {"Dup": 1, "Dup": 2, ', 1
        )
        if broken == text:  # the corruption removed the object: duplicate at the top level
            broken = '{"A": 1, "A": 2, ' + text[1:]
    elif kind == "deep":
        depth = draw(st.integers(5_000, 120_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        broken = '{"Deep": ' + opener * depth + "0" + closer * depth + ", " + text[1:]
    elif kind == "big int":
        digits = draw(st.integers(4_400, 20_000))
        broken = '{"Big": ' + "9" * digits + ", " + text[1:]
    elif kind == "trailing":
        broken = text + draw(st.sampled_from(["x", "}", " {}", ",", "]"]))
    elif kind == "bom":
        broken = "\ufeff" + text
    else:
        broken = text[: draw(st.integers(0, max(0, len(text) - 1)))]
    return Text(broken, None, (*inner.recipe, f"JSON {kind}"))


@st.composite
def not_an_object(draw: st.DrawFn) -> Text:
    value = draw(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(),
            st.text(max_size=30),
            st.lists(st.integers(), max_size=5),
            st.lists(st.builds(valid_document, valid_request_ids), max_size=2),
        )
    )
    return Text(json.dumps(value), None, ("JSON not an object",))


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return False


not_json = (
    st.text(max_size=200)
    .filter(lambda t: not _is_json_object(t))
    .map(lambda t: Text(t, None, ("not JSON",)))
)
ascii_not_json = (
    st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=200
    )
    .filter(lambda t: not _is_json_object(t))
    .map(lambda t: Text(t, None, ("not JSON",)))
)


@st.composite
def json_texts(draw: st.DrawFn) -> Text:
    inner = draw(corrupted_documents())
    if draw(st.integers(0, 3)) == 0:
        return draw(broken_json(inner))
    return inner


# -- SNS envelopes -------------------------------------------------------------------------------

TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:calls"


@st.composite
def sns_wrapped(draw: st.DrawFn, inner: st.SearchStrategy[Text]) -> Text:
    envelope: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
        "TopicArn": TOPIC_ARN,
        "Timestamp": "2026-11-21T09:00:00.000Z",
    }
    kind = draw(st.sampled_from(["poison", "garbage", "not a string", "outer RequestId"]))
    if kind == "not a string":
        envelope["Message"] = draw(st.one_of(_scalars, st.none(), _containers))
        return Text(json.dumps(envelope), None, ("SNS Message not a string",))
    if kind == "garbage":
        garbage = draw(ascii_not_json)
        envelope["Message"] = garbage.text
        return Text(json.dumps(envelope), None, ("SNS garbage",))
    wrapped = draw(inner)
    envelope["Message"] = wrapped.text
    if kind == "outer RequestId":
        # Only the notification's Message counts; an id beside it is not the request's.
        envelope["RequestId"] = "outer-id"
    return Text(json.dumps(envelope), wrapped.request_id, ("SNS", *wrapped.recipe))


def _texts() -> st.SearchStrategy[Text]:
    return st.one_of(json_texts(), not_an_object(), sns_wrapped(json_texts()))


# -- body-level corruptions (parser only: SQS bodies are text) -----------------------------------

_INVALID_UTF8 = (
    b"\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"\xf8\x88\x80\x80\x80",
    b"\x80",
)


@st.composite
def body_level(draw: st.DrawFn, inner: Text) -> Poison:
    kind = draw(st.sampled_from(["invalid utf-8", "raw surrogate", "over 1 MiB"]))
    if kind == "invalid utf-8":
        raw = inner.text.encode("utf-8", "surrogatepass")
        at = draw(st.integers(0, len(raw)))
        bad = draw(st.sampled_from(_INVALID_UTF8))
        return Poison(raw[:at] + bad + raw[at:], None, (*inner.recipe, "invalid UTF-8"))
    if kind == "raw surrogate":
        at = draw(st.integers(0, len(inner.text)))
        raw_text = inner.text[:at] + "\udc80" + inner.text[at:]
        return Poison(raw_text, None, (*inner.recipe, "raw surrogate"))
    padding = MAX_BODY_BYTES + draw(st.integers(1, 4096))
    padded = inner.text[:-1] + " " * padding + inner.text[-1:] if inner.text else " " * padding
    return Poison(padded, None, (*inner.recipe, "over 1 MiB"))


@st.composite
def parser_poison(draw: st.DrawFn) -> Poison:
    """Any hostile body, as `str` or `bytes`."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        text = draw(not_json)
        return Poison(text.text, None, text.recipe)
    if choice == 1:
        raw = draw(st.binary(max_size=200).filter(lambda b: not _decodes_to_object(b)))
        return Poison(raw, None, ("random bytes",))
    text = draw(_texts())
    if choice == 2:
        return draw(body_level(text))
    body: str | bytes = text.text
    if draw(st.booleans()):
        body = text.text.encode("utf-8")
    return Poison(body, text.request_id, text.recipe)


def _decodes_to_object(raw: bytes) -> bool:
    try:
        return _is_json_object(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return False


@st.composite
def sqs_poison(draw: st.DrawFn) -> Poison:
    """A hostile body that SQS accepts: ASCII text under 256 KB."""
    text = draw(
        st.one_of(ascii_not_json, _texts()).filter(lambda t: 0 < len(t.text) < SQS_BODY_LIMIT)
    )
    return Poison(text.text, text.request_id, text.recipe)


def many_unknown_fields(request_id: str, count: int) -> Poison:
    """A body whose every key is a problem: one error per key, tens of thousands of them."""
    document: dict[str, Any] = valid_document(request_id)
    document.update({f"x{i}": 0 for i in range(count)})
    return Poison(json.dumps(document), request_id, (f"{count} unknown fields",))


def huge_key(request_id: str, length: int) -> Poison:
    """An unknown field whose name alone is `length` characters."""
    document: dict[str, Any] = valid_document(request_id)
    document["K" * length] = 1
    return Poison(json.dumps(document), request_id, (f"a {length}-character key",))
