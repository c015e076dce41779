"""The reference backend's page in a real headless browser (Debian's chromium and chromedriver),
against the backend under uvicorn, a real worker process, the emulator and the local SQS server:
the customer presses "Call us" and watches the call to its outcome."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from examples.web.__main__ import READY
from orchestrator.engine.events import EventType
from orchestrator.testing.local_sqs import LocalSqsServer
from orchestrator.testing.processes import child_env, server_process
from orchestrator.testing.requests import FLOW_ID, INSTANCE_ID, REGION
from orchestrator.testing.waiting import eventually
from tests.examples.conftest import web_peers
from tests.examples.webdriver import headless_browser, missing_browser

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.slow,
    pytest.mark.skipif(missing_browser() is not None, reason=missing_browser() or ""),
]


async def test_the_page_calls_shows_the_progress_and_the_outcome(
    sqs_server: LocalSqsServer, tmp_path: Path
) -> None:
    async with web_peers(sqs_server.url, tmp_path) as rig:
        env = child_env(
            {
                "WEB_QUEUE_URL": rig.queues.requests,
                "WEB_REGION": REGION,
                "WEB_ENDPOINT_URL": sqs_server.url,
                "WEB_INSTANCE_ID": INSTANCE_ID,
                "WEB_CONTACT_FLOW_ID": FLOW_ID,
                "PYTHONPATH": str(ROOT),
            }
        )
        argv = [sys.executable, "-m", "examples.web", "--port", "0"]
        async with (
            server_process("web", argv, READY, tmp_path / "web.log", env=env) as web,
            headless_browser(tmp_path / "chromedriver.log") as browser,
        ):
            await browser.open(web.url)
            assert await browser.text("status") == "Not calling."
            await browser.click("#call")

            async def joined() -> str | None:
                return await browser.data("status", "joined")

            assert await eventually(joined, within=60, message="the page to join") == "yes"

            async def outcome() -> str | None:
                return await browser.data("outcome", "type")

            final = await eventually(outcome, within=60, message="the call's outcome on the page")
            assert final == EventType.SCREEN_SHARING_STARTED
            assert await browser.text("outcome") == f"Call ended: {final}"
            shown = await browser.script(
                "return [...document.querySelectorAll('#log li')].map(li => li.dataset.type)"
            )
            # In arrival order (a standard queue may swap neighbours), the final one last; places
            # in line among them while the customer waited.
            steps = [t for t in shown if t != EventType.QUEUE_POSITION]
            assert sorted(steps) == sorted(
                [
                    EventType.RECEIVED,
                    EventType.STARTED,
                    EventType.AGENT_CONNECTED,
                    EventType.SCREEN_SHARING_STARTED,
                ]
            )
            assert shown[-1] == final
            assert await browser.text("status") == "Screen sharing is on."
