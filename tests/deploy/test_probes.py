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

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.observability import (
    EndpointProbe,
    Health,
    LoopMonitor,
    create_app,
    serve_observability,
)
from orchestrator.metrics import Metrics
from orchestrator.testing.emulator import Emulator
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.deploy._support import compose_services, healthcheck, one, worker_env
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


async def run_healthcheck(command: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Runs an `orchestrator ...` healthcheck command here, as the container runtime would."""
    assert command[0] == "orchestrator"
    result = await anyio.run_process(
        [sys.executable, "-m", "orchestrator", *command[1:]],
        env={**os.environ, **env},
        check=False,
    )
    return result.returncode, result.stderr.decode()


async def docker_healthcheck(port: int, queue_url: str) -> tuple[int, str]:
    """The Dockerfile's HEALTHCHECK, with the worker's configuration in the environment."""
    _, command = healthcheck(FINAL_STAGE)
    env = {"ORCHESTRATOR_QUEUE__URL": queue_url, "ORCHESTRATOR_OBSERVABILITY__PORT": str(port)}
    return await run_healthcheck(command, env)


async def compose_healthcheck(port: int) -> tuple[int, str]:
    """The compose worker's healthcheck with its environment (host 0.0.0.0), on `port`."""
    test: list[str] = compose_services()["worker"]["healthcheck"]["test"]
    env = {**worker_env(), "ORCHESTRATOR_OBSERVABILITY__PORT": str(port)}
    return await run_healthcheck(test[1:], env)


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
        assert await docker_healthcheck(port, queue) == (0, "")
        assert await compose_healthcheck(port) == (0, "")

        worker.stop()  # stopping: readiness goes red at once, liveness stays green

        async def not_ready() -> bool:
            return await status(http, base + paths["readiness"]) == 503

        await eventually(not_ready, within=5, message="readiness to fail once stopping")
        assert await status(http, base + paths["liveness"]) == 200
        tg.cancel_scope.cancel()


async def test_healthchecks_fail_with_the_reason_when_nothing_listens() -> None:
    port = free_port()
    code, stderr = await docker_healthcheck(port, "http://127.0.0.1:1/000000000000/q")
    assert code == 1
    assert f"http://127.0.0.1:{port}/healthz did not answer" in stderr
    code, stderr = await compose_healthcheck(port)
    assert code == 1
    assert f"http://127.0.0.1:{port}/healthz did not answer" in stderr


async def test_healthcheck_says_so_when_there_is_no_server_to_ask() -> None:
    env = {
        "ORCHESTRATOR_QUEUE__URL": "http://127.0.0.1:1/000000000000/q",
        "ORCHESTRATOR_OBSERVABILITY__ENABLED": "false",
    }
    code, stderr = await run_healthcheck(["orchestrator", "healthcheck"], env)
    assert code == 1
    assert "observability server is disabled" in stderr


async def test_healthcheck_with_a_broken_configuration_exits_2() -> None:
    env = {"ORCHESTRATOR_OBSERVABILITY__PORT": "not-a-port"}
    code, stderr = await run_healthcheck(["orchestrator", "healthcheck"], env)
    assert code == 2
    assert "observability" in stderr
