"""The examples the docs show work as the docs say: the minimal call request is valid, truly
minimal, and gets screen sharing through a real worker."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from orchestrator.daemon.assembly import open_worker
from orchestrator.engine.events import EventType
from orchestrator.engine.request import RequestRejected, parse_request
from orchestrator.sinks import MemorySink
from orchestrator.testing.queues import create_queue_with_dlq, send_all
from tests.support.worker import settings_for

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

    from orchestrator.testing.emulator import Emulator
    from orchestrator.testing.local_sqs import LocalSqsServer

PAGE = Path(__file__).resolve().parents[2] / "docs" / "requests-and-events.md"


def _example(heading: str) -> dict[str, Any]:
    """The first JSON block under `heading` on the requests page."""
    text = PAGE.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    match = re.search(r"```json\n(.*?)\n```", section, re.DOTALL)
    assert match is not None, f"no JSON example under {heading!r}"
    example: dict[str, Any] = json.loads(match.group(1))
    return example


MINIMAL = _example("### A minimal request")


def _without(document: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    copy: dict[str, Any] = json.loads(json.dumps(document))
    node = copy
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return copy


def _leaves(document: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = []
    for key, value in document.items():
        if isinstance(value, dict):
            paths += _leaves(value, (*prefix, key))
        else:
            paths.append((*prefix, key))
    return paths


def test_the_minimal_request_is_valid_and_nothing_in_it_can_be_left_out() -> None:
    request = parse_request(json.dumps(MINIMAL))

    assert request.request_id == MINIMAL["RequestId"]
    # Screen sharing is wanted by default, so both sides may share their screen, nothing else.
    assert request.allowed_capabilities is not None
    assert request.allowed_capabilities.customer is not None
    assert request.allowed_capabilities.agent is not None
    for side in (request.allowed_capabilities.customer, request.allowed_capabilities.agent):
        assert (side.screen_share, side.video) == ("SEND", None)
    leaves = _leaves(MINIMAL)
    assert len(leaves) == 4
    for path in leaves:
        with pytest.raises(RequestRejected):
            parse_request(json.dumps(_without(MINIMAL, path)))


async def test_the_minimal_request_gets_screen_sharing_once_an_agent_connects(
    start_emulator: Any, sqs_server: LocalSqsServer, sqs_client: SQSClient
) -> None:
    emulator: Emulator = await start_emulator(agent_delay_s=(0.1, 0.2), abandon_rate=0.0)
    queue, _ = await create_queue_with_dlq(sqs_client, max_receive_count=2)
    await send_all(sqs_client, queue, [json.dumps(MINIMAL)])
    sink = MemorySink()
    settings = settings_for(emulator.url, sqs_server.url, queue)

    async with open_worker(settings, extra_sinks=[sink]) as worker:
        await worker.run(drain=True)

    finals = [e for e in sink.events if e.final]
    assert [(e.request_id, e.type) for e in finals] == [
        (MINIMAL["RequestId"], EventType.SCREEN_SHARING_STARTED)
    ]
