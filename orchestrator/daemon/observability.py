"""Metrics and health over HTTP: `/metrics`, `/healthz` (liveness) and `/readyz` (readiness).

The HTTP server runs on its own thread and event loop, so it can still answer when the worker's
event loop is blocked: that is exactly when `/healthz` must say so. It only reads state the worker's
loop publishes (the loop monitor's last tick, the receive loop's progress, the Connect probe).

* `/healthz` fails (503) when the event loop has not ticked, or the receive loop has not made
  progress, for longer than `stall_threshold_s`.
* `/readyz` fails when the worker is not running or is shutting down, when the queue is failing
  (the last receive failed), or when the Connect endpoint is unreachable (TCP probe).
"""

from __future__ import annotations

import asyncio
import errno
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import structlog
from aiohttp import web
from anyio.abc import TaskStatus

from orchestrator.daemon.redrive import QUEUE_PART
from orchestrator.daemon.settings import ObservabilitySettings
from orchestrator.daemon.worker import Worker
from orchestrator.errors import ConfigError
from orchestrator.metrics import Metrics

log = structlog.get_logger("orchestrator.daemon.observability")


class LoopMonitor:
    """Ticks inside the worker's event loop; records lag and when it last ran."""

    def __init__(self, metrics: Metrics, interval_s: float = 0.25) -> None:
        self._metrics = metrics
        self._interval = interval_s
        self.last_tick = time.monotonic()
        self.last_lag_s = 0.0

    async def run(self) -> None:
        while True:
            before = time.monotonic()
            await anyio.sleep(self._interval)
            now = time.monotonic()
            self.last_lag_s = max(0.0, now - before - self._interval)
            self._metrics.loop_lag.observe(self.last_lag_s)
            self.last_tick = now


class EndpointProbe:
    """Is an HTTPS endpoint reachable? (DNS and a TCP connection; no API call, no quota spent.)"""

    def __init__(self, url: str, interval_s: float = 15.0, timeout_s: float = 3.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._interval = interval_s
        self._timeout = timeout_s
        self.reachable: bool | None = None
        self.error: str | None = None

    async def check(self) -> bool:
        try:
            with anyio.fail_after(self._timeout):
                stream = await anyio.connect_tcp(self.host, self.port)
            await stream.aclose()
        except (OSError, TimeoutError) as exc:
            self.reachable, self.error = False, repr(exc)
        else:
            self.reachable, self.error = True, None
        return self.reachable

    async def run(self) -> None:
        while True:
            await self.check()
            await anyio.sleep(self._interval)


@dataclass
class Health:
    worker: Worker
    monitor: LoopMonitor
    connect: EndpointProbe
    stall_threshold_s: float

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        status = self.worker.status
        loop_silent = now - self.monitor.last_tick
        receive_silent = now - status.last_progress
        receive_stalled = (
            status.receiving and not status.paused and receive_silent > self.stall_threshold_s
        )
        checks = {
            "event_loop_silent_s": round(loop_silent, 3),
            "event_loop_stalled": loop_silent > self.stall_threshold_s,
            "receive_loop_silent_s": round(receive_silent, 3),
            "receive_loop_stalled": receive_stalled,
        }
        return not (checks["event_loop_stalled"] or receive_stalled), checks

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        status = self.worker.status
        board = self.worker.readiness
        checks: dict[str, Any] = {
            "running": status.running,
            "stopping": status.stopping,
            # The receive loop's failures and the queue part's report agree (a missing queue
            # fails both).
            "queue_ok": status.receive_failures == 0 and board.part_ok(QUEUE_PART),
            "connect_reachable": self.connect.reachable is True,
            "connect_error": self.connect.error,
        }
        for part, report in board.snapshot().items():
            checks[part] = {"ok": report.ok, "degraded": report.degraded, "reason": report.reason}
        ready = (
            checks["running"]
            and not checks["stopping"]
            and checks["queue_ok"]
            and checks["connect_reachable"]
            and board.ready
        )
        return bool(ready), checks


def _answer(ok: bool, checks: dict[str, Any]) -> web.Response:
    body = json.dumps({"status": "ok" if ok else "fail", "checks": checks})
    return web.Response(status=200 if ok else 503, text=body, content_type="application/json")


def create_app(metrics: Metrics, health: Health) -> web.Application:
    async def metrics_endpoint(_request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"}
        )

    async def healthz(_request: web.Request) -> web.Response:
        return _answer(*health.liveness())

    async def readyz(_request: web.Request) -> web.Response:
        return _answer(*health.readiness())

    app = web.Application()
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


class ThreadedServer:
    """An aiohttp app on its own thread and event loop."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="observability", daemon=True
        )
        self._runner: web.AppRunner | None = None
        self.url = ""

    def start(self) -> str:
        self._thread.start()

        async def start() -> str:
            self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
            await self._runner.setup()
            await web.TCPSite(self._runner, self._host, self._port).start()
            host, port = self._runner.addresses[0][:2]
            return f"http://{host}:{port}"

        self.url = asyncio.run_coroutine_threadsafe(start(), self._loop).result(timeout=10)
        return self.url

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


async def serve_observability(
    settings: ObservabilitySettings,
    worker: Worker,
    metrics: Metrics,
    connect_endpoint: str,
    *,
    port_origin: str | None = None,
    task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; `task_status.started(url)` once listening. `port_origin` says
    where the port was configured (`Settings.origin`), for the error when it is taken."""
    monitor = LoopMonitor(metrics)
    probe = EndpointProbe(connect_endpoint)
    health = Health(worker, monitor, probe, settings.stall_threshold_s)
    server = ThreadedServer(create_app(metrics, health), settings.host, settings.port)
    try:
        url = await anyio.to_thread.run_sync(server.start)
    except OSError as exc:
        await anyio.to_thread.run_sync(server.stop)
        if exc.errno != errno.EADDRINUSE:
            raise
        # Another process (often a second worker on this host) holds the port.
        origin = port_origin or "[observability] port"
        raise ConfigError(
            f"observability.port: {settings.host}:{settings.port} is already in use ({origin}; "
            "give each worker its own port, or 0 for a free one)"
        ) from None
    log.info("observability.listening", url=url)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor.run)
            tg.start_soon(probe.run)
            task_status.started(url)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(server.stop)


#: Addresses that mean "every interface": a local check connects to loopback instead.
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 (not a bind)


def local_url(settings: ObservabilitySettings, path: str) -> str:
    """The URL a process on the same host uses to reach `path` on the observability server."""
    host = _WILDCARDS.get(settings.host, settings.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}{path}"


def check_endpoint(settings: ObservabilitySettings, path: str, timeout_s: float) -> str | None:
    """Ask the running worker's `path` (e.g. `/healthz`); `None` when it answers 200, else why not.

    Synchronous on purpose: it backs `orchestrator healthcheck`, a one-shot process that
    container runtimes run next to the worker.
    """
    if not settings.enabled:
        return "the observability server is disabled ([observability] enabled = false)"
    if settings.port == 0:
        return "[observability] port is 0 (a random port): there is no fixed port to check"
    url = local_url(settings, path)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (http only)
            status = response.status
            body = response.read(2048)
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}: {exc.read(2048).decode(errors='replace')}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} did not answer: {exc}"
    return None if status == 200 else f"{url} answered {status}: {body.decode(errors='replace')}"
