"""What the orchestrator exposes, and to whom: loopback by default, destinations by config only.

* The metrics/health server and the emulator listen on loopback unless configured otherwise.
  (The emulator command's exit status 2 for a non-loopback `--host` is covered by
  tests/emulator/test_cli.py::test_emulator_command_refuses_a_non_loopback_host.)
* A request cannot choose where its events or tokens go: routing-looking fields are unknown
  fields, the message is rejected, nothing reaches Connect, nothing reaches the place it named.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import pytest
from aiohttp import web

from orchestrator.daemon.assembly import open_worker
from orchestrator.daemon.observability import serve_observability
from orchestrator.daemon.settings import ObservabilitySettings, load_settings
from orchestrator.engine.request import client_token
from orchestrator.metrics import Metrics
from orchestrator.testing.emulator import Emulator
from orchestrator.testing.emulator.server import is_loopback
from orchestrator.testing.local_sqs import LocalSqsServer
from tests.reliability.poison import ROUTING_FIELDS, TOPIC_ARN, valid_document
from tests.support import create_queue_with_dlq, eventually, queue_counts, settings_for
from tests.support.runs import run_worker_on

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

pytestmark = pytest.mark.timeout(90)


def other_local_addresses() -> list[str]:
    """This host's IPv4 addresses that are not loopback (empty on a host with none)."""
    found: set[str] = set()
    for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
        found.add(str(info[4][0]))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.255", 9))  # no packet is sent: this only picks a route
            found.add(probe.getsockname()[0])
        except OSError:
            pass
    return sorted(a for a in found if not ipaddress.ip_address(a).is_loopback)


def refuses_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return False
    except OSError:
        return True


def assert_only_on_loopback(url: str) -> None:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    assert ipaddress.ip_address(parts.hostname).is_loopback, url
    for address in other_local_addresses():
        assert refuses_connections(address, parts.port), f"reachable on {address}:{parts.port}"


# -- listening addresses --------------------------------------------------------------------------


def test_observability_defaults_to_loopback() -> None:
    assert ObservabilitySettings().host == "127.0.0.1"
    settings = load_settings(None, queue={"url": "https://sqs.example/123/q"})
    assert settings.observability.host == "127.0.0.1"


async def test_the_metrics_server_is_bound_to_loopback_only(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    metrics = Metrics()
    async with (
        open_worker(settings_for(emulator.url, sqs_server.url, queue), metrics=metrics) as worker,
        anyio.create_task_group() as tg,
    ):
        url: str = await tg.start(
            serve_observability, ObservabilitySettings(port=0), worker, metrics, emulator.url
        )
        assert_only_on_loopback(url)
        tg.cancel_scope.cancel()


async def test_the_daemon_serves_metrics_on_loopback_unless_told_otherwise(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    queue, _ = await create_queue_with_dlq(sqs_client)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(
        ORCHESTRATOR_QUEUE__URL=queue,
        ORCHESTRATOR_QUEUE__WAIT_TIME_S="1",
        ORCHESTRATOR_AWS__ENDPOINT_URL=sqs_server.url,
        ORCHESTRATOR_CONNECT__ENDPOINT_URL=emulator.url,
        ORCHESTRATOR_OBSERVABILITY__PORT="0",  # any free port; the host is left to its default
    )
    lines: list[str] = []
    async with await anyio.open_process(
        [sys.executable, "-m", "orchestrator", "run"], env=env
    ) as process:

        async def read() -> None:
            assert process.stdout is not None
            buffer = b""
            async for chunk in process.stdout:
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                lines.extend(line.decode() for line in complete)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            await eventually(
                lambda: any("observability.listening" in line for line in lines),
                within=30,
                message="the metrics server to listen",
            )
            record = next(json.loads(line) for line in lines if "observability.listening" in line)
            assert_only_on_loopback(record["url"])
            process.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                assert await process.wait() == 0


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "::", "", "192.0.2.10", "10.0.0.1", "localhost.example.com", "127.0.0.1.nip.io"],  # noqa: S104
)
def test_the_emulator_refuses_to_listen_beyond_loopback_without_allow_remote(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ValueError, match="refusing to listen on non-loopback address"):
        Emulator(host=host)
    Emulator(host=host, allow_remote=True)  # an explicit opt-in (not started here)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_the_emulator_accepts_loopback_addresses(host: str) -> None:
    assert is_loopback(host)
    Emulator(host=host)


async def test_a_started_emulator_listens_on_loopback_only(emulator: Emulator) -> None:
    assert_only_on_loopback(emulator.url)


# -- a request cannot route its own events ---------------------------------------------------------


@asynccontextmanager
async def listener() -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP endpoint on loopback that records every request it gets (a would-be callback)."""
    hits: list[str] = []

    async def record(request: web.Request) -> web.Response:
        hits.append(f"{request.method} {request.path}")
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}/hook", hits
    finally:
        await runner.cleanup()


def routing_request(request_id: str, **extra: Any) -> str:
    document = valid_document(request_id)
    document.update(extra)
    return json.dumps(document)


async def test_a_request_cannot_choose_where_its_events_or_tokens_go(
    emulator: Emulator, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    attacker_queue = (await sqs_client.create_queue(QueueName=f"evil-{uuid.uuid4().hex[:8]}"))[
        "QueueUrl"
    ]
    async with listener() as (hook_url, hits):
        targets = {"queue": attacker_queue, "hook": hook_url}
        hostile = {
            **{
                f"route-{name}": routing_request(f"route-{name}", **{name: hook_url})
                for name in ROUTING_FIELDS
            },
            "route-queue": routing_request("route-queue", EventsQueueUrl=attacker_queue),
            # A real queue on the worker's own SQS server: no [events] reply_to_allowed, no reply.
            "route-reply": routing_request("route-reply", ReplyTo=attacker_queue),
            "route-sinks": routing_request(
                "route-sinks", Sinks=[{"type": "sqs", "url": attacker_queue}]
            ),
            "route-all": routing_request(
                "route-all",
                EventsQueueUrl=attacker_queue,
                Destination=attacker_queue,
                CallbackUrl=hook_url,
                Sinks=[attacker_queue],
            ),
            "route-nested": routing_request(
                "route-nested",
                ParticipantDetails={"DisplayName": "Jane", "CallbackUrl": hook_url},
            ),
            "route-sns": json.dumps(
                {
                    "Type": "Notification",
                    "TopicArn": TOPIC_ARN,
                    "Message": routing_request("route-sns", EventsQueueUrl=attacker_queue),
                }
            ),
        }
        # A destination-looking contact attribute is just data for Connect: the request goes
        # through, and its events still go only where the configuration says.
        harmless = routing_request("attribute-only", Attributes={"EventsQueueUrl": hook_url})
        run = await run_worker_on(sqs_server.url, [*hostile.values(), harmless])

    finals = run.final_types()
    for request_id in hostile:
        assert run.types_of(request_id) == {"request.rejected"}, request_id
    for event in run.events:
        if event["type"] == "request.rejected":
            errors = event["data"]["errors"]
            # ReplyTo is a field, honoured only for allowed queues; the others are unknown.
            assert errors and all(
                e["message"] == "unknown field"
                or (e["field"] == "ReplyTo" and "reply_to_allowed is empty" in e["message"])
                or (e["field"] == "ReplyTo" and "must be an SQS queue URL" in e["message"])
                for e in errors
            ), errors
    assert finals["attribute-only"] == {"screen_sharing.started"}
    # Nothing went where a request asked, and no event repeats the destination it named.
    assert await queue_counts(sqs_client, attacker_queue) == (0, 0)
    assert hits == []
    for body, _ in run.event_messages:
        assert not any(target in body for target in targets.values()), body[:200]
    # Rejected requests never reached Connect; only the valid one has a contact.
    assert [c["ClientToken"] for c in run.contacts] == [client_token("attribute-only", "start")]
    assert sorted(run.dead_letters) == sorted(hostile.values())
