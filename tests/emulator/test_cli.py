"""`orchestrator emulator` as a real process: it announces its URL, serves, stops on a signal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiobotocore.session import get_session

from orchestrator.testing.emulator import EmulatorConfig
from orchestrator.testing.emulator.cli import add_arguments, config_from_args
from tests.conftest import INSTANCE_ID, REGION, no_retries
from tests.emulator._helpers import ControlApi, start_args

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"Connect emulator listening on (http://127\.0\.0\.1:(\d+))")
STARTUP_S = 30.0


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchestrator",
        "emulator",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=PROJECT_ROOT,
    )


@contextlib.asynccontextmanager
async def _running(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """The emulator command on a free port; yields the process and the URL it announced."""
    process = await _spawn("--port", "0", *args)
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), STARTUP_S)).decode().strip()
        match = LISTENING.fullmatch(line)
        assert match, f"unexpected first line: {line!r}"
        assert int(match.group(2)) > 0
        yield process, match.group(1)
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()


async def _exit_status(*args: str) -> tuple[int, str, str]:
    process = await _spawn(*args)
    stdout, stderr = await asyncio.wait_for(process.communicate(), STARTUP_S)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_emulator_command_serves_connect_until_signalled(
    stop_signal: signal.Signals,
) -> None:
    async with _running("--agent-delay", "0.05:0.1", "--seed", "3") as (process, url):
        async with get_session().create_client(
            "connect", region_name=REGION, endpoint_url=url, config=no_retries()
        ) as client:
            started = await client.start_web_rtc_contact(**start_args())
            described = await client.describe_contact(
                InstanceId=INSTANCE_ID, ContactId=started["ContactId"]
            )

        process.send_signal(stop_signal)
        _, stderr = await asyncio.wait_for(process.communicate(), STARTUP_S)

        assert described["Contact"]["Id"] == started["ContactId"]
        assert process.returncode == 0, stderr.decode()


async def test_emulator_command_turns_options_into_settings() -> None:
    options = [
        "--instance-id", INSTANCE_ID,
        "--contact-flow-id", "flow-1",
        "--region", "eu-west-2",
        "--agents", "3",
        "--handle-time", "1:2",
        "--patience", "5",
        "--quota", "DescribeContact=5/7",
        "--no-quotas",
        "--max-concurrent-calls", "0",
        "--error-rate", "0.25",
        "--latency", "1:3",
        "--consistency-delay", "0.5",
        "--after-contact-work", "1:2",
        "--events-drop-rate", "0.1",
        "--events-duplicate-rate", "0.2",
        "--events-delay", "0.05-0.6",
    ]  # fmt: skip
    async with _running(*options) as (process, url):
        config = await ControlApi(url).config()
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), STARTUP_S)

    assert config["instance_ids"] == [INSTANCE_ID]
    assert config["contact_flow_ids"] == ["flow-1"]
    assert config["region"] == "eu-west-2"
    assert config["agents"] == 3
    assert config["handle_time_s"] == [1.0, 2.0]
    assert config["patience_s"] == [5.0, 5.0]
    assert config["quotas"]["DescribeContact"] == {"rate": 5.0, "burst": 7.0}
    assert config["quotas"]["StartWebRTCContact"] == {"rate": 2.0, "burst": 5.0}
    assert config["quotas_enabled"] is False
    assert config["max_concurrent_calls"] is None
    assert config["error_rate"] == 0.25
    assert config["latency_ms"] == [1.0, 3.0]
    assert config["consistency_delay_s"] == 0.5
    assert config["after_contact_work_s"] == [1.0, 2.0]
    assert (config["events_drop_rate"], config["events_duplicate_rate"]) == (0.1, 0.2)
    assert config["events_delay_s"] == [0.05, 0.6]
    assert process.returncode == 0


async def test_emulator_command_refuses_a_non_loopback_host() -> None:
    status, stdout, stderr = await _exit_status("--host", "0.0.0.0", "--port", "0")  # noqa: S104

    assert status == 2
    assert "refusing to listen on non-loopback address '0.0.0.0'" in stderr
    assert "--allow-remote" in stderr
    assert "listening" not in stdout


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--agent-delay", "5:1"], "--agent-delay"),
        (["--latency", "1:2:3"], "--latency"),
        (["--quota", "ListContacts=1/1"], "--quota"),
        (["--port", "not-a-port"], "--port"),
        (["--error-rate", "2"], "error_rate must be between 0 and 1"),
        (["--abandon-rate", "-0.5"], "abandon_rate must be between 0 and 1"),
        (["--events-drop-rate", "1.5"], "events_drop_rate must be between 0 and 1"),
        (["--events-delay", "0.6-0.05"], "--events-delay"),
    ],
    ids=[
        "inverted range",
        "three numbers",
        "unknown operation",
        "port",
        "rate",
        "negative",
        "event drop rate",
        "inverted event delay",
    ],
)
async def test_emulator_command_rejects_invalid_option_values(
    args: list[str], complaint: str
) -> None:
    status, stdout, stderr = await _exit_status("--port", "0", *args)

    assert status == 2
    assert complaint in stderr
    assert "listening" not in stdout


def test_emulator_options_take_their_defaults_from_the_config() -> None:
    """No option given: the config is `EmulatorConfig()`'s defaults, and each option's help
    shows the default of the field it sets (the dataclass is the one home of a default)."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    assert config_from_args(parser.parse_args([])) == EmulatorConfig()
    helps = {a.dest: a.help or "" for a in parser._actions}
    assert "(default 2:10)" in helps["agent_delay_s"]
    assert f"(default {EmulatorConfig().max_concurrent_calls})" in helps["max_concurrent_calls"]
    assert "(default" not in helps["seed"]  # None: nothing to show
