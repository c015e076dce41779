"""Poison messages through a real worker: each is rejected and ends in the DLQ, and hurts nobody.

Each example is a real drain-mode run against the SQS server and the Connect emulator: generated
hostile bodies interleaved with valid requests on a queue whose redrive policy moves a message to
the DLQ after two receives. Events are read back from the SQS event sink, so a rejection too big
for SQS would show up as a missing event (and as valid requests' events failing alongside it).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orchestrator.engine.request import ATTRIBUTES_MAX_BYTES, MAX_BODY_BYTES, client_token
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.poison import Poison
from tests.reliability.poison import (
    TOPIC_ARN,
    huge_key,
    many_unknown_fields,
    sqs_poison,
    valid_document,
)
from tests.support import request_body
from tests.support.runs import WorkerRun, run_worker_on

pytestmark = pytest.mark.timeout(300)

_runs = itertools.count()

SHOWCASE = [
    many_unknown_fields("many-keys", 20_000),  # 20,000 field errors from a 230 KB body
    huge_key("huge-key", 200_000),
    Poison(
        '{"RequestId": "lone-surrogate", "InstanceId": "i", "ContactFlowId": "f", '
        '"ParticipantDetails": {"DisplayName": "Jane \\ud800"}}',
        "lone-surrogate",
        ("\\ud800 escape in DisplayName",),
    ),
    Poison(
        json.dumps({"Type": "Notification", "TopicArn": TOPIC_ARN, "Message": "<html>oops"}),
        None,
        ("SNS envelope around garbage",),
    ),
    Poison("[" * 50_000 + "]" * 50_000, None, ("nested 50,000 deep",)),
]


def check_poison_run(run: WorkerRun, poisons: list[Poison], valid_ids: list[str]) -> None:
    finals = run.final_types()
    for request_id in valid_ids:
        assert finals.get(request_id) == {"screen_sharing.started"}, request_id
    poison_ids = run.message_ids[: len(poisons)]
    for poison, message_id in zip(poisons, poison_ids, strict=True):
        if poison.request_id is not None:
            assert run.types_of(poison.request_id) == {"request.rejected"}, poison
        else:
            logged = [
                r
                for r in run.logged("request.invalid_message")
                if r.get("message_id") == message_id
            ]
            assert logged, f"no logged rejection for {poison!r}"
            assert all(r["request_id"] is None for r in logged)
    assert sorted(run.dead_letters) == sorted(p.body for p in poisons)
    assert run.left_in_queue == (0, 0)
    assert not run.logged("worker.unexpected_error")
    # Nothing but the valid requests ever reached Connect.
    assert sorted(c["ClientToken"] for c in run.contacts) == sorted(
        client_token(rid, "start") for rid in valid_ids
    )


def poison_scenario(sqs_url: str, poisons: list[Poison]) -> None:
    run_no = next(_runs)
    valid_ids = [f"valid-{run_no}-{i}-ok" for i in range(3)]
    # Poison first (so message ids line up), valid requests interleaved by SQS's own ordering.
    bodies = [p.text for p in poisons] + [request_body(rid) for rid in valid_ids]

    async def scenario() -> WorkerRun:
        return await run_worker_on(sqs_url, bodies)

    run = anyio.run(scenario)
    check_poison_run(run, poisons, valid_ids)


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    database=None,
    # Each example builds its own queues and emulator; the shared fixtures are the session's SQS
    # server and the credentials environment, both safe to share.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(st.lists(sqs_poison(), min_size=2, max_size=5))
@example(SHOWCASE)
def test_poison_is_rejected_into_the_dlq_while_valid_requests_complete(
    sqs_server: LocalSqsServer, poisons: list[Poison]
) -> None:
    poison_scenario(sqs_server.url, poisons)


def padded_valid_body(request_id: str, target_bytes: int, attributes_bytes: int) -> str:
    """A valid request whose Attributes hold `attributes_bytes` UTF-8 bytes (keys and values),
    each character written as a `\\uXXXX` escape, padded with JSON whitespace to exactly
    `target_bytes`."""
    document: dict[str, Any] = valid_document(request_id)
    keys = ["a", "b", "c"]
    value_bytes = attributes_bytes - len("".join(keys))
    share = value_bytes // len(keys)
    values = [share, share, value_bytes - 2 * share]
    document["Attributes"] = {key: "v" * size for key, size in zip(keys, values, strict=True)}
    text = json.dumps(document)
    escaped = text.replace('"v', '"\\u0076').replace("v", "\\u0076")
    assert json.loads(escaped) == document
    padding = target_bytes - len(escaped)
    assert padding >= 0, f"{len(escaped)} bytes before padding"
    return escaped[:-1] + " " * padding + "}"


# The producer here (the test's aiobotocore client) sends the 1 MiB body as raw bytes, which
# aiohttp warns about; the worker only receives it.
@pytest.mark.filterwarnings("ignore:Sending a large body directly with raw bytes:ResourceWarning")
@pytest.mark.parametrize("size", [262_000, MAX_BODY_BYTES], ids=["256KB", "1MiB"])
async def test_a_valid_request_near_the_size_limits_completes(
    sqs_server: LocalSqsServer, size: int
) -> None:
    request_id = f"big-valid-{size}"
    body = padded_valid_body(request_id, size, ATTRIBUTES_MAX_BYTES)
    assert len(body.encode()) == size
    run = await run_worker_on(sqs_server.url, [body])

    assert run.final_types() == {request_id: {"screen_sharing.started"}}
    (contact,) = run.contacts
    attributes = contact["Request"]["Attributes"]
    assert sum(len(k) + len(v) for k, v in attributes.items()) == ATTRIBUTES_MAX_BYTES
    assert run.dead_letters == []
    assert run.left_in_queue == (0, 0)


async def test_a_body_near_256_kb_one_byte_over_the_attribute_budget_goes_to_the_dlq(
    sqs_server: LocalSqsServer,
) -> None:
    body = padded_valid_body("big-rejected", 262_000, ATTRIBUTES_MAX_BYTES + 1)
    run = await run_worker_on(sqs_server.url, [body, request_body("small-valid")])

    assert run.final_types() == {
        "big-rejected": {"request.rejected"},
        "small-valid": {"screen_sharing.started"},
    }
    rejections = [e for e in run.events if e["type"] == "request.rejected"]
    # On its first receive and again on its last (of two), under one id: not once per receive.
    assert [e["id"] for e in rejections] == ["big-rejected:request.rejected"] * 2
    assert [e["field"] for e in rejections[0]["data"]["errors"]] == ["Attributes"]
    assert run.dead_letters == [body]
    assert run.left_in_queue == (0, 0)
