"""Without the `otel` extra, or with `OTEL_SDK_DISABLED=true`, a whole lifecycle runs and nothing
from `opentelemetry` is imported (a fresh interpreter each, as `orchestrator run` starts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import tracing
from orchestrator.errors import ConfigError
from orchestrator.tracing.otel import OtelTracer

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(120)


def _run(mode: str, **env: str) -> dict[str, object]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ORCH"))}
    environment.update(env, OTEL_TRACES_EXPORTER="console")  # would print spans, were it on
    done = subprocess.run(
        [sys.executable, "-m", "tests.tracing.lifecycle_without_otel", mode],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=100,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("mode", "env"),
    [("absent", {}), ("disabled", {"OTEL_SDK_DISABLED": "true"})],
    ids=["extra-absent", "sdk-disabled"],
)
def test_without_the_extra_or_disabled_nothing_is_imported_and_the_lifecycle_runs(
    mode: str, env: dict[str, str]
) -> None:
    result = _run(mode, **env)
    assert result["enabled"] is False
    assert result["finals"] == ["screen_sharing.started"]
    assert result["trace_ids"] == ["None"]
    assert result["imported"] == []
    assert result["facade_loaded_sdk"] is False
    if mode == "absent":  # not even redis-py found any
        assert result["by_redis"] == 0


def test_with_the_extra_the_environment_turns_tracing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counter-check of the test above: the same decision with the extra importable."""
    monkeypatch.delenv("OTEL_SDK_DISABLED")  # the suite's default (tests/conftest.py)
    implementation = tracing.from_environment({"OTEL_TRACES_EXPORTER": "none"})
    try:
        assert isinstance(implementation, OtelTracer)
        with implementation.span("checked") as span:
            assert span.is_recording()
    finally:
        implementation.shutdown()
    assert tracing.from_environment({"OTEL_SDK_DISABLED": "TRUE"}) is tracing.NOOP


def test_an_unknown_exporter_or_protocol_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="zipkin"):
        tracing.from_environment({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ConfigError, match="http/protobuf"):
        tracing.from_environment({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
