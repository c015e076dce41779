"""`orchestrator dev` as a new operator uses it: start it, copy what it prints, run a worker on
that configuration, enqueue the printed request, see its final event; Ctrl-C ends it all."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from orchestrator.daemon.settings import load_settings
from tests.support import eventually

pytestmark = pytest.mark.timeout(120)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any AWS or orchestrator variable: only what `dev` printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ORCHESTRATOR_"))}
    env.update(extra, AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    return env


async def read_until(process: Process, text: list[str], marker: str) -> None:
    assert process.stdout is not None
    async for chunk in TextReceiveStream(process.stdout):
        text.append(chunk)
        if marker in "".join(text):
            return


async def test_dev_prints_a_configuration_a_real_worker_runs_on(tmp_path: Path) -> None:
    env = clean_env()
    dev = await anyio.open_process(
        [sys.executable, "-m", "orchestrator", "dev", "--dir", str(tmp_path)],
        env=env,
        stderr=subprocess.STDOUT,
    )
    async with dev:
        printed: list[str] = []
        with anyio.fail_after(60):
            await read_until(dev, printed, "Ctrl-C stops the servers")
        out = "".join(printed)

        # What it prints is what it wrote, and a valid configuration.
        config = Path(re.findall(r"Configuration, written to (\S+):", out)[0])
        assert config == tmp_path / "orchestrator.toml"
        assert await anyio.Path(config).read_text() in out
        settings = load_settings(config)
        exports = dict(
            pair.split("=", 1) for pair in shlex.split(re.findall(r"export (.+)", out)[0])
        )
        assert set(exports) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
        run = f"orchestrator run --config {config}"
        assert run in out
        enqueue_line = next(line for line in out.splitlines() if "orchestrator enqueue" in line)
        sample = shlex.split(enqueue_line.split("|")[0])[1]
        request_id = json.loads(sample)["RequestId"]

        # Run the worker and enqueue the request exactly as printed (a short long poll and a
        # free metrics port, so that the test stops quickly and never collides).
        worker_env = clean_env(
            **exports, ORCHESTRATOR_QUEUE__WAIT_TIME_S="1", ORCHESTRATOR_OBSERVABILITY__PORT="0"
        )
        worker = await anyio.open_process(
            [sys.executable, "-m", "orchestrator", *shlex.split(run)[1:]],
            env=worker_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        async with worker:
            sent = await anyio.run_process(
                [sys.executable, "-m", "orchestrator", "enqueue", "--config", str(config)],
                input=sample.encode(),
                env=clean_env(**exports),
                check=False,
            )
            assert sent.returncode == 0, sent.stderr
            assert b"sent 1 of 1" in sent.stdout
            events = Path(str(settings.events.jsonl_path))

            def finals() -> list[dict[str, object]]:
                if not events.exists():
                    return []
                records = [json.loads(line) for line in events.read_text().splitlines()]
                return [r for r in records if r["final"] and r["request_id"] == request_id]

            await eventually(lambda: bool(finals()), within=60, message="the final event")
            worker.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                assert await worker.wait() == 0
        # The contact was started on the emulator and ended as a contact does (an agent, or a
        # customer of the emulated contact center who hung up first).
        assert finals()[0]["type"] in {
            "screen_sharing.started",
            "screen_sharing.skipped",
            "contact.disconnected",
        }

        dev.send_signal(signal.SIGINT)
        with anyio.fail_after(30):
            assert await dev.wait() == 0
