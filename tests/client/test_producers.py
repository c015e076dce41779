"""Several producer processes on one request queue, one real worker: each sees exactly its own
calls' events, and every call's connection data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.testing.processes import child_env, run_child
from tests.client.conftest import LiveWorker

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

PRODUCERS = 3
CALLS = 8


async def test_three_producers_each_see_exactly_their_own_calls_events(
    live_worker: LiveWorker, start_emulator: Any, tmp_path: Path
) -> None:
    # Room for every call at once: the instance's concurrent-call cap is not under test here.
    roomy = await start_emulator(max_concurrent_calls=None)
    results: dict[str, dict[str, Any]] = {}
    async with live_worker(emulator_url=roomy.url) as live:

        async def producer(name: str) -> None:
            argv = [
                sys.executable, "-m", "orchestrator.testing.producer",
                "--queue-url", live.queue, "--endpoint-url", live.sqs_url,
                "--calls", str(CALLS), "--concurrency", str(CALLS), "--id-prefix", name,
                "--timeout-s", "90",
            ]  # fmt: skip
            results[name] = await run_child(
                argv, tmp_path / f"{name}.log", timeout_s=150, env=child_env()
            )

        async with anyio.create_task_group() as tg:
            for index in range(PRODUCERS):
                tg.start_soon(producer, f"p{index}")

        for name, result in results.items():
            calls = result["calls"]
            assert [c["request_id"] for c in calls] == [f"{name}-{i}" for i in range(CALLS)]
            assert result["dropped"] == 0, f"{name} received replies meant for others"
            for call in calls:
                assert call["connection_data"], call["request_id"]
                assert {e["request_id"] for e in call["events"]} == {call["request_id"]}
                # Exactly the events the configured sink carried for that call.
                sunk = {r["id"] for r in live.events_of(call["request_id"])}
                assert {e["id"] for e in call["events"]} == sunk
