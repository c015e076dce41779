"""The probed paths are the served ones: the real observability server next to a real worker."""

from __future__ import annotations

import os
import socket
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
import anyio
import pytest

from orchestrator.emulator import Emulator
from orchestrator.local_sqs import LocalSqsServer
from orchestrator.metrics import Metrics
from orchestrator.observability import (
    EndpointProbe,
    Health,
    LoopMonitor,
    create_app,
    serve_observability,
)
from orchestrator.runtime import open_worker
from tests.deploy._support import compose_services, healthcheck, one
from tests.support import create_queue_with_dlq, eventually, settings_for

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(60)

FINAL_STAGE = 1


def probed_paths() -> dict[str, str]:
    (container,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return {
        kind: container[f"{kind}Probe"]["httpGet"]["path"]
        for kind in ("liveness", "readiness", "startup")
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def docker_healthcheck(port: int) -> int:
    """Runs the Dockerfile's HEALTHCHECK command with the observability port set to `port`."""
    _, command = healthcheck(FINAL_STAGE)
    env = {**os.environ, "ORCHESTRATOR_OBSERVABILITY__PORT": str(port)}
    result = await anyio.run_process([sys.executable, *command[1:]], env=env, check=False)
    return result.returncode


async def compose_healthcheck(port: int) -> int:
    code: str = compose_services()["worker"]["healthcheck"]["test"][3]
    assert "127.0.0.1:9464/" in code
    code = code.replace("127.0.0.1:9464/", f"127.0.0.1:{port}/")
    result = await anyio.run_process([sys.executable, "-c", code], check=False)
    return result.returncode


async def status(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as response:
        await response.read()
        return response.status


async def test_probes_and_healthchecks_pass_against_a_running_worker(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    settings = settings_for(
        emulator.url,
        sqs_server.url,
        queue,
        observability={"enabled": True, "host": "127.0.0.1", "port": 0},
    )
    metrics = Metrics()
    paths = probed_paths()
    async with (
        open_worker(settings, metrics=metrics) as worker,
        aiohttp.ClientSession() as http,
        anyio.create_task_group() as tg,
    ):
        base: str = await tg.start(
            serve_observability, settings.observability, worker, metrics, emulator.url
        )
        tg.start_soon(worker.run)

        # The app the server runs routes exactly the probed and scraped paths.
        health = Health(worker, LoopMonitor(metrics), EndpointProbe(emulator.url), 60.0)
        served = {
            route.resource.canonical
            for route in create_app(metrics, health).router.routes()
            if route.method == "GET" and route.resource is not None
        }
        scraped = one("Deployment")["spec"]["template"]["metadata"]["annotations"]
        assert served == {*paths.values(), scraped["prometheus.io/path"]}

        async def all_ok() -> bool:
            codes = [await status(http, base + path) for path in paths.values()]
            return codes == [200] * len(codes)

        await eventually(all_ok, within=15, message="liveness and readiness to pass")
        assert await status(http, base + "/metrics") == 200
        assert await status(http, base + "/no-such-path") == 404

        port = urlsplit(base).port
        assert port is not None
        assert await docker_healthcheck(port) == 0
        assert await compose_healthcheck(port) == 0

        worker.stop()  # stopping: readiness goes red at once, liveness stays green

        async def not_ready() -> bool:
            return await status(http, base + paths["readiness"]) == 503

        await eventually(not_ready, within=5, message="readiness to fail once stopping")
        assert await status(http, base + paths["liveness"]) == 200
        tg.cancel_scope.cancel()


async def test_healthchecks_fail_when_nothing_listens() -> None:
    port = free_port()
    assert await docker_healthcheck(port) != 0
    assert await compose_healthcheck(port) != 0
