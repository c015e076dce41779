"""Secrets stay where they belong: tokens only in the sinks configured to carry them, never a log.

The whole pipeline runs for real (SQS server, Connect emulator with faults, the worker) with the
production logging pipeline at DEBUG and botocore's loggers forced to DEBUG as well, where botocore
dumps every request and response body: the Connect responses carrying ParticipantToken and
JoinToken, and the SendMessageBatch requests carrying them to the event queue.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.conftest import ACCESS_KEY, INSTANCE_ID, SECRET_KEY
from tests.support import request_body
from tests.support.runs import RunOptions, run_worker_on

pytestmark = pytest.mark.timeout(120)

Starter = Any

SECRET_FIELDS = ("ParticipantToken", "ConnectionData", "JoinToken")


def tokens_of(records: list[dict[str, Any]]) -> list[str]:
    """ParticipantToken and JoinToken of every `contact.started` record carrying them."""
    out: list[str] = []
    for record in records:
        if record["type"] == "contact.started" and "ParticipantToken" in record["data"]:
            data = record["data"]
            out += [data["ParticipantToken"], data["ConnectionData"]["Attendee"]["JoinToken"]]
    return out


def forms_of(secret: str) -> set[str]:
    """The ways a secret could appear in a log line: as is, JSON- or URL-escaped, or a piece."""
    return {
        secret,
        secret.replace("/", "\\/"),
        urllib.parse.quote(secret, safe=""),
        secret[:24],
        secret[-24:],
    }


def assert_nothing_secret_in(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        for form in forms_of(secret):
            assert form not in text, f"a secret reached the log: {form[:8]}…"


async def test_no_token_or_aws_secret_reaches_a_log_line_even_with_botocore_at_debug(
    start_emulator: Starter, sqs_server: LocalSqsServer
) -> None:
    # Faults make every layer retry (and log it): 5xx, responses lost after the call took effect,
    # early 404s after a contact was created.
    emulator: Emulator = await start_emulator(
        instance_ids=frozenset({INSTANCE_ID}),
        error_rate=0.15,
        drop_rate=0.1,
        consistency_delay_s=0.1,
        seed=11,
    )
    no_share = {"Customer": {"Video": "SEND"}, "Agent": {"ScreenShare": "SEND"}}
    bodies = [
        *(request_body(f"secret-{i}") for i in range(5)),
        request_body("secret-declines", ScreenSharing=False),
        request_body("secret-not-allowed", AllowedCapabilities=no_share),
        request_body("secret-wrong-instance", InstanceId="no-such-instance"),
        request_body("secret-invalid", ParticipantDetails={"DisplayName": ""}),
        "not json at all",
    ]
    memory = MemorySink(include_connection_data=True)
    run = await run_worker_on(
        sqs_server.url,
        bodies,
        emulator=emulator,
        options=RunOptions(
            max_receive_count=4,
            log_level="DEBUG",
            library_debug=True,
            extra_sinks=[memory],
            sections={"connect": {"retry_max_attempts": 8, "retry_max_time_s": 10}},
        ),
    )
    text = run.log_text

    # The run really took the paths that log the most: retries, failures, botocore's dumps.
    outcomes = run.final_types()
    assert outcomes["secret-wrong-instance"] == {"request.failed"}
    assert outcomes["secret-invalid"] == {"request.rejected"}
    names = {record.get("event", "") for record in run.logs}
    assert {"retry.scheduled", "request.failed", "request.invalid_message"} <= names
    botocore_lines = [r for r in run.logs if str(r.get("logger", "")).startswith("botocore")]
    assert any("Response body" in str(r.get("event")) for r in botocore_lines)
    assert any("SendMessageBatch" in str(r.get("event")) for r in botocore_lines)

    secrets = tokens_of(memory.records())
    assert len(secrets) >= 2 * 5, "the started contacts' tokens (from the sink that carries them)"
    assert set(secrets) <= set(tokens_of(run.events)), "the SQS sink carries the same tokens"
    assert_nothing_secret_in(text, [*secrets, SECRET_KEY])
    # Structured fields that name a secret are masked whatever their value.
    for record in run.logs:
        for key in record:
            if key.lower().endswith(("token", "secret", "connectiondata")):
                assert record[key] == "***", key


@pytest.mark.parametrize("include", [False, True], ids=["without", "with"])
async def test_connection_data_reaches_the_sinks_only_when_configured_and_never_the_log(
    emulator: Emulator, sqs_server: LocalSqsServer, tmp_path: Path, include: bool
) -> None:
    jsonl = tmp_path / "events.jsonl"
    memory = MemorySink(include_connection_data=True)  # the test's own view of the tokens
    run = await run_worker_on(
        sqs_server.url,
        [request_body(f"conn-{i}") for i in range(3)],
        emulator=emulator,
        options=RunOptions(log_level="DEBUG", extra_sinks=[memory]),
        events={"include_connection_data": include, "jsonl_path": str(jsonl)},
    )
    secrets = tokens_of(memory.records())
    assert len(secrets) == 2 * 3
    sqs_bodies = [body for body, _ in run.event_messages]
    jsonl_lines = jsonl.read_text().splitlines()
    assert len(jsonl_lines) == len(sqs_bodies) >= 4 * 3

    for body in [*sqs_bodies, *jsonl_lines]:
        carries = any(field in body for field in SECRET_FIELDS)
        assert carries == (include and '"type":"contact.started"' in body), body[:120]
    if include:
        assert sorted(tokens_of(run.events)) == sorted(secrets)
        assert sorted(tokens_of([json.loads(line) for line in jsonl_lines])) == sorted(secrets)
    else:
        assert_nothing_secret_in("\n".join([*sqs_bodies, *jsonl_lines]), secrets)
    # SQS message attributes carry the event type and request id, nothing else.
    for _, attributes in run.event_messages:
        assert set(attributes) == {"type", "request_id"}

    assert_nothing_secret_in(run.log_text, [*secrets, SECRET_KEY])
    for record in run.logs:
        assert not set(SECRET_FIELDS) & set(record.get("data") or {})
    assert ACCESS_KEY not in run.log_text
