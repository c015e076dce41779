"""Contact events: EventBridge-shaped "Amazon Connect Contact Event" records, to JSONL and SQS."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

from tests.conftest import INSTANCE_ID
from tests.emulator._helpers import ControlApi, start_args
from tests.support import eventually

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from types_aiobotocore_sqs import SQSClient

    from orchestrator.testing.emulator import Emulator
    from orchestrator.testing.local_sqs import LocalSqsServer
    from tests.emulator._helpers import ClientFactory

LIFE = ["INITIATED", "QUEUED", "CONNECTED_TO_AGENT", "DISCONNECTED"]
INSTANCE_ARN = f"arn:aws:connect:us-east-1:123456789012:instance/{INSTANCE_ID}"


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


async def _jsonl_events(path: Path, contact_id: str) -> list[dict[str, Any]]:
    apath = anyio.Path(path)
    if not await apath.exists():
        return []
    # Only lines the writer has finished (newline-terminated) count.
    *complete, _unfinished = (await apath.read_text()).split("\n")
    records = [json.loads(line) for line in complete]
    return [r for r in records if r["detail"]["contactId"] == contact_id]


async def _events_until_disconnected(path: Path, contact_id: str) -> list[dict[str, Any]]:
    async def ended() -> list[dict[str, Any]] | None:
        events = await _jsonl_events(path, contact_id)
        types = [e["detail"]["eventType"] for e in events]
        return events if "DISCONNECTED" in types else None

    return await eventually(ended)


async def _published_count_reaches(control: ControlApi, count: int) -> None:
    """The counter goes up just after a batch is written, so it may lag the records a moment."""

    async def reached() -> bool:
        published: int = (await control.stats())["contact_events_published"]
        return published == count

    await eventually(reached)


async def _start(emulator: Emulator, client_for: ClientFactory, **overrides: Any) -> str:
    client = await client_for(emulator)
    return (await client.start_web_rtc_contact(**start_args(**overrides)))["ContactId"]


async def test_contact_life_is_published_as_eventbridge_events_to_jsonl(
    start_emulator: Callable[..., Any], client_for: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    emulator = await start_emulator(
        events_jsonl_path=str(path), agent_delay_s=(0.05, 0.1), talk_time_s=(0.1, 0.1)
    )
    contact_id = await _start(emulator, client_for)

    events = await _events_until_disconnected(path, contact_id)

    truth = await ControlApi(emulator.url).contact(contact_id)
    assert [e["detail"]["eventType"] for e in events] == LIFE
    contact_arn = f"{INSTANCE_ARN}/contact/{contact_id}"
    for event in events:
        assert event["source"] == "aws.connect"
        assert event["detail-type"] == "Amazon Connect Contact Event"
        assert event["version"] == "0"
        assert uuid.UUID(event["id"])
        assert event["account"] == "123456789012"
        assert event["region"] == "us-east-1"
        assert event["resources"] == [INSTANCE_ARN, contact_arn]
        detail = event["detail"]
        assert detail["contactId"] == contact_id
        assert detail["channel"] == "VOICE"
        assert detail["initiationMethod"] == "WEBRTC_API"
        assert detail["instanceArn"] == INSTANCE_ARN
        assert detail["initiationTimestamp"] == _iso(truth["CreatedAt"])
    initiated, queued, connected, disconnected = (e["detail"] for e in events)
    assert "queueInfo" not in initiated
    assert queued["queueInfo"]["enqueueTimestamp"] == _iso(truth["EnqueuedAt"])
    assert queued["queueInfo"]["queueArn"].startswith(f"{INSTANCE_ARN}/queue/")
    assert "agentInfo" not in queued
    assert connected["agentInfo"] == {
        "agentArn": f"{INSTANCE_ARN}/agent/{truth['AgentId']}",
        "connectedToAgentTimestamp": _iso(truth["ConnectedToAgentAt"]),
    }
    assert "disconnectTimestamp" not in connected
    assert disconnected["disconnectTimestamp"] == _iso(truth["DisconnectedAt"])
    assert events[-1]["time"] == _iso(truth["DisconnectedAt"])


async def test_abandoned_contact_publishes_no_agent_event(
    start_emulator: Callable[..., Any], client_for: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    emulator = await start_emulator(
        events_jsonl_path=str(path), abandon_rate=1.0, agent_delay_s=(0.05, 0.1)
    )
    contact_id = await _start(emulator, client_for)

    events = await _events_until_disconnected(path, contact_id)

    assert [e["detail"]["eventType"] for e in events] == ["INITIATED", "QUEUED", "DISCONNECTED"]
    assert "agentInfo" not in events[-1]["detail"]
    assert "disconnectTimestamp" in events[-1]["detail"]


async def test_forced_transitions_publish_their_events(
    start_emulator: Callable[..., Any], client_for: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    emulator = await start_emulator(events_jsonl_path=str(path), flow_delay_s=30.0)
    control = ControlApi(emulator.url)
    contact_id = await _start(emulator, client_for)

    await control.connect_agent(contact_id)
    await control.disconnect(contact_id)
    events = await _events_until_disconnected(path, contact_id)

    assert [e["detail"]["eventType"] for e in events] == LIFE
    await _published_count_reaches(control, 4)


async def test_contact_events_arrive_on_the_sqs_queue(
    start_emulator: Callable[..., Any],
    client_for: ClientFactory,
    sqs_server: LocalSqsServer,
    sqs_client: SQSClient,
    sqs_queue: str,
) -> None:
    emulator = await start_emulator(
        events_queue_url=sqs_queue,
        events_endpoint_url=sqs_server.url,
        agent_delay_s=(0.05, 0.1),
        talk_time_s=(0.1, 0.1),
    )
    contact_id = await _start(emulator, client_for)
    received: list[dict[str, Any]] = []

    async def all_four() -> bool:
        answer = await sqs_client.receive_message(
            QueueUrl=sqs_queue, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        for message in answer.get("Messages", []):
            received.append(json.loads(message["Body"]))
            await sqs_client.delete_message(
                QueueUrl=sqs_queue, ReceiptHandle=message["ReceiptHandle"]
            )
        return len(received) >= len(LIFE)

    await eventually(all_four)

    assert sorted(r["detail"]["eventType"] for r in received) == sorted(LIFE)
    assert {r["detail"]["contactId"] for r in received} == {contact_id}
    assert {r["source"] for r in received} == {"aws.connect"}
    assert {r["detail-type"] for r in received} == {"Amazon Connect Contact Event"}
    await _published_count_reaches(ControlApi(emulator.url), 4)
