"""Logs never carry secrets: connection tokens, AWS keys, whatever path they take to the output."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from orchestrator.connect.gateway import GatewayPolicies
from orchestrator.daemon.logs import REDACTED, configure_logging, redact
from orchestrator.engine.events import EventType
from orchestrator.errors import RetryableConnectError
from orchestrator.metrics import Metrics
from orchestrator.retry import RetryPolicy
from orchestrator.sinks import FanoutSink, LogSink, MemorySink
from orchestrator.testing.emulator import Emulator
from tests.conftest import INSTANCE_ID, SECRET_KEY
from tests.support.engine import call_request, make_engine
from tests.support.peers import ClientFactory

Starter = Callable[..., Any]
LogCapture = Callable[[], contextlib.AbstractContextManager[io.StringIO]]

_LIBRARY_LOGGERS = ("botocore", "aiobotocore", "urllib3", "aiohttp.access", "werkzeug")


@pytest.fixture
def json_logs() -> LogCapture:
    """`with json_logs() as stream:` logs as production does (JSON, DEBUG) into `stream`.

    Logging is global: the block restores structlog's configuration, the root logger's handlers
    and level and the library loggers' levels exactly as they were when it began.
    """

    @contextlib.contextmanager
    def capture() -> Iterator[io.StringIO]:
        saved_config = structlog.get_config()
        root = logging.getLogger()
        saved_handlers, saved_level = root.handlers[:], root.level
        saved_levels = {name: logging.getLogger(name).level for name in _LIBRARY_LOGGERS}
        stream = io.StringIO()
        configure_logging(level="DEBUG", json_output=True, stream=stream)
        try:
            yield stream
        finally:
            structlog.configure(**saved_config)
            root.handlers[:] = saved_handlers
            root.setLevel(saved_level)
            for name, level in saved_levels.items():
                logging.getLogger(name).setLevel(level)
            structlog.contextvars.clear_contextvars()

    return capture


def quick_retries() -> GatewayPolicies:
    def policy(name: str) -> RetryPolicy:
        return RetryPolicy(
            name,
            retry_on=(RetryableConnectError,),
            max_attempts=12,
            initial_s=0.05,
            max_backoff_s=0.1,
            rng=random.Random(0),
        )

    return GatewayPolicies(
        start=policy("connect.start"),
        describe=policy("connect.describe"),
        screen_sharing=policy("connect.screen_sharing"),
    )


async def test_lifecycle_logs_never_contain_connection_tokens_or_aws_secrets(
    start_emulator: Starter, client_for: ClientFactory, json_logs: LogCapture
) -> None:
    # Early 404s after each start make the describe policy retry (and log it).
    emulator: Emulator = await start_emulator(
        instance_ids=frozenset({INSTANCE_ID}), consistency_delay_s=0.15
    )
    memory = MemorySink(include_connection_data=True)
    client = await client_for(emulator)

    with json_logs() as stream:
        engine = make_engine(
            client,
            FanoutSink([LogSink(), memory], metrics=Metrics()),
            policies=quick_retries(),
            seed=3,
        )
        finals = [
            await engine.run(call_request("secret-1")),
            await engine.run(call_request("secret-2", ScreenSharing=False)),
            await engine.run(call_request("secret-3", InstanceId="not-an-instance")),
        ]
    text = stream.getvalue()

    assert [f.type for f in finals] == [
        EventType.SCREEN_SHARING_STARTED,
        EventType.SCREEN_SHARING_SKIPPED,
        EventType.FAILED,
    ]
    records = [json.loads(line) for line in text.splitlines()]
    logged = {record["event"] for record in records}
    assert {"contact.started", "retry.scheduled", "request.failed"} <= logged
    started = [record for record in memory.records() if record["type"] == EventType.STARTED.value]
    secrets: list[str] = []
    for record in started:
        data: dict[str, Any] = record["data"]  # type: ignore[assignment]
        secrets += [data["ParticipantToken"], data["ConnectionData"]["Attendee"]["JoinToken"]]
    assert len(secrets) == 4
    for secret in secrets:
        assert secret not in text
        assert secret[:24] not in text  # not even a piece of one
    assert SECRET_KEY not in text


def test_secrets_reaching_a_log_by_accident_are_masked(json_logs: LogCapture) -> None:
    token = "AbCdEf0123456789GhIjKl0123456789MnOpQr"
    with json_logs() as stream:
        log = structlog.get_logger("orchestrator.test")
        log.info("debug.dump", participant_token=token, note=f"joined with {token}")
        log.info("debug.nested", response={"ConnectionData": {"x": 1}, "Items": [token]})
        logging.getLogger("aiohttp.client").warning("sent %s with %s", token, SECRET_KEY)
        try:
            refuse(token)
        except RuntimeError:
            log.exception("debug.failed")
    text = stream.getvalue()

    assert token not in text
    assert SECRET_KEY not in text
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["event"] for r in records][:2] == ["debug.dump", "debug.nested"]
    assert records[0]["participant_token"] == REDACTED
    assert records[0]["note"] == f"joined with {REDACTED}"
    assert records[1]["response"] == {"ConnectionData": REDACTED, "Items": [REDACTED]}
    assert "RuntimeError" in records[3]["exception"]


def refuse(token: str) -> None:
    raise RuntimeError(f"refused {token}")


def test_redaction_keeps_ids_urls_and_words() -> None:
    keep = {
        "contact_id": "e619cfeb-55fd-4cdd-9eaa-14e2a0791b22",
        "url": "https://2713.cell.us-east-1.meetings.chime.aws/v2/turn_sessions",
        "arn": "arn:aws:connect:us-east-1:123456789012:instance/11111111-2222",
        "words": "a_perfectly_ordinary_identifier_name_in_snake_case",
    }

    assert redact(keep) == keep
