"""Running the emulator: in the current event loop, in a background thread, or as a command."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import threading
import time
from collections.abc import Callable
from typing import Self

from aiohttp import web

from .app import EmulatorState, create_app
from .config import EmulatorConfig


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Emulator:
    """A Connect emulator served from the running event loop.

    ```python
    async with Emulator(EmulatorConfig(agent_delay_s=(0.1, 0.3))) as emulator:
        client = session.create_client("connect", endpoint_url=emulator.url, ...)
    ```
    `port=0` picks a free port; `url` tells which.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"refusing to listen on non-loopback address {host!r}: the emulator has no real "
                "authentication; pass allow_remote=True (--allow-remote) to do it anyway"
            )
        self.state = EmulatorState(config or EmulatorConfig(), clock=clock)
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        self._runner = web.AppRunner(create_app(self.state), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        # Started again after `stop()` (an outage), it answers on the same address, same state.
        self._port = port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class EmulatorThread:
    """The emulator on its own event loop in a daemon thread, for synchronous callers (boto3).

    Any number of threads may call it over HTTP at once: every request, the simulation and the
    event delivery run on the emulator's one loop, so its state has a single writer. Reach the
    state through the HTTP control API (`EmulatorControl`), not through `emulator.state`.
    """

    def __init__(
        self, config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._config = config
        self._host = host
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="emulator", daemon=True)
        self._emulator: Emulator | None = None

    @property
    def url(self) -> str:
        return self.emulator.url

    @property
    def emulator(self) -> Emulator:
        if self._emulator is None:
            raise RuntimeError("the emulator is not running")
        return self._emulator

    def __enter__(self) -> Self:
        self._thread.start()

        async def start() -> Emulator:
            emulator = Emulator(self._config, host=self._host, port=self._port)
            await emulator.start()
            return emulator

        try:
            self._emulator = asyncio.run_coroutine_threadsafe(start(), self._loop).result(
                timeout=30
            )
        except BaseException:
            self._stop_loop()
            raise
        return self

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def __exit__(self, *exc_info: object) -> None:
        if self._emulator is not None:
            asyncio.run_coroutine_threadsafe(self._emulator.stop(), self._loop).result(timeout=30)
        self._stop_loop()


async def serve(
    config: EmulatorConfig,
    *,
    host: str,
    port: int,
    allow_remote: bool,
    ready: Callable[[str], None],
) -> None:
    """Serve until SIGTERM or SIGINT. The signal handlers only set a flag."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Emulator(config, host=host, port=port, allow_remote=allow_remote) as emulator:
        ready(emulator.url)
        await stop.wait()
