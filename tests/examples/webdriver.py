"""A headless Chromium driven over the WebDriver protocol (plain HTTP to Debian's chromedriver):
nothing is downloaded, no Selenium."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from orchestrator.testing.processes import stop_process
from orchestrator.testing.redis import free_port
from orchestrator.testing.waiting import eventually

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
#: The W3C key of an element reference.
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def missing_browser() -> str | None:
    """Why no browser test can run here (None: both binaries are installed)."""
    absent = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if not absent and shutil.which(CHROMEDRIVER):
        return None
    return (
        f"SKIPPED: no headless browser: {', '.join(absent)} missing "
        "(apt-get install chromium chromium-driver; .ci/run installs them)"
    )


class Browser:
    """One WebDriver session."""

    def __init__(self, http: aiohttp.ClientSession, base: str, session: str) -> None:
        self._http, self._base, self._session = http, base, session

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        url = f"{self._base}/session/{self._session}{path}"
        async with self._http.request(method, url, json=body) as response:
            answer = await response.json()
        if response.status >= 400:
            raise RuntimeError(f"WebDriver {method} {path}: {answer.get('value')}")
        return answer.get("value")

    async def open(self, url: str) -> None:
        await self._call("POST", "/url", {"url": url})

    async def click(self, css: str) -> None:
        found = await self._call("POST", "/element", {"using": "css selector", "value": css})
        await self._call("POST", f"/element/{found[ELEMENT]}/click", {})

    async def script(self, source: str, *args: Any) -> Any:
        return await self._call("POST", "/execute/sync", {"script": source, "args": list(args)})

    async def text(self, element_id: str) -> str:
        script = "return document.getElementById(arguments[0]).textContent"
        return str(await self.script(script, element_id))

    async def data(self, element_id: str, key: str) -> str | None:
        value = await self.script(
            "return document.getElementById(arguments[0]).dataset[arguments[1]] || null",
            element_id,
            key,
        )
        return None if value is None else str(value)


@contextlib.asynccontextmanager
async def headless_browser(log_path: Path) -> AsyncIterator[Browser]:
    """chromedriver on a free port, one Chromium session with a fresh profile; both gone after."""
    port = free_port()
    with log_path.open("w", encoding="utf-8") as log, tempfile.TemporaryDirectory() as profile:
        driver = await anyio.open_process([CHROMEDRIVER, f"--port={port}"], stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

                async def ready() -> bool:
                    try:
                        async with http.get(f"{base}/status") as response:
                            return bool((await response.json())["value"]["ready"])
                    except aiohttp.ClientError:
                        return False

                await eventually(ready, within=30, message="chromedriver to answer")
                options = {"binary": CHROMIUM, "args": [*FLAGS, f"--user-data-dir={profile}"]}
                capabilities = {
                    "capabilities": {
                        "alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}
                    }
                }
                async with http.post(f"{base}/session", json=capabilities) as response:
                    created = await response.json()
                if response.status >= 400:
                    raise RuntimeError(f"no browser session: {created.get('value')}")
                session = created["value"]["sessionId"]
                try:
                    yield Browser(http, base, session)
                finally:
                    with anyio.CancelScope(shield=True):
                        async with http.delete(f"{base}/session/{session}"):
                            pass
        finally:
            await stop_process(driver)
