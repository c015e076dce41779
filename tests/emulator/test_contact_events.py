"""Contact events: EventBridge-shaped "Amazon Connect Contact Event" records, to JSONL and SQS,
delivered best effort (dropped, duplicated, delayed out of order) when the knobs say so."""

from __future__ import annotations

import json
import re
from collections import Counter
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
    from tests.emulator._helpers import ClientFactory, EmulatorStarter, ManualClock

LIFE = [
    "INITIATED",
    "CONTACT_DATA_UPDATED",
    "QUEUED",
    "CONNECTED_TO_AGENT",
    "DISCONNECTED",
    "COMPLETED",
]
INSTANCE_ARN = f"arn:aws:connect:us-east-1:123456789012:instance/{INSTANCE_ID}"
PLACEHOLDER = "1970-01-01T00:00:00.001Z"
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
ISO_S = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
CAMEL = re.compile(r"[a-z]+(?:[A-Z][a-z]*)*")
ENVELOPE_KEYS = {
    "version",
    "id",
    "detail-type",
    "source",
    "account",
    "time",
    "region",
    "resources",
    "detail",
}
#: Settings under which every contact lives its whole life within a moment of being started.
QUICK_LIFE = {
    "agent_delay_s": (0.05, 0.1),
    "talk_time_s": (0.1, 0.1),
    "after_contact_work_s": (0.1, 0.1),
}


def _iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


async def _jsonl(path: Path) -> list[dict[str, Any]]:
    apath = anyio.Path(path)
    if not await apath.exists():
        return []
    # Only lines the writer has finished (newline-terminated) count.
    *complete, _unfinished = (await apath.read_text()).split("\n")
    return [json.loads(line) for line in complete]


async def _events_of(path: Path, contact_id: str) -> list[dict[str, Any]]:
    return [r for r in await _jsonl(path) if r["detail"]["contactId"] == contact_id]


async def _events_until_completed(path: Path, contact_id: str) -> list[dict[str, Any]]:
    async def ended() -> list[dict[str, Any]] | None:
        events = await _events_of(path, contact_id)
        types = [e["detail"]["eventType"] for e in events]
        return events if "COMPLETED" in types else None

    return await eventually(ended)


async def _all_delivered(control: ControlApi) -> dict[str, Any]:
    """The stats once nothing waits for delivery any more."""

    async def settled() -> dict[str, Any] | None:
        stats = await control.stats()
        return stats if stats["contact_events_pending"] == 0 else None

    return await eventually(settled)


async def _published_count_reaches(control: ControlApi, count: int) -> None:
    """The counter goes up just after a batch is written, so it may lag the records a moment."""

    async def reached() -> bool:
        published: int = (await control.stats())["contact_events_published"]
        return published == count

    await eventually(reached)


async def _start(emulator: Emulator, client_for: ClientFactory, **overrides: Any) -> str:
    client = await client_for(emulator)
    return (await client.start_web_rtc_contact(**start_args(**overrides)))["ContactId"]


def _camel_case_keys(value: Any, where: str = "detail") -> list[str]:
    """Every key under `value` that is not camelCase (tags keep AWS's own `aws:...` keys)."""
    if not isinstance(value, dict):
        return []
    wrong = []
    for key, item in value.items():
        if not CAMEL.fullmatch(key):
            wrong.append(f"{where}.{key}")
        if key != "tags":
            wrong.extend(_camel_case_keys(item, f"{where}.{key}"))
    return wrong


async def _lived_contacts(
    start_clocked_emulator: EmulatorStarter,
    client_for: ClientFactory,
    clock: ManualClock,
    contacts: int,
    **config: Any,
) -> tuple[Emulator, ControlApi]:
    """`contacts` contacts that have lived their whole life (six events each) on the clock."""
    emulator = await start_clocked_emulator(
        quotas_enabled=False, max_concurrent_calls=None, **config
    )
    client, control = await client_for(emulator), ControlApi(emulator.url)
    for _ in range(contacts):
        await client.start_web_rtc_contact(**start_args())
    clock.advance(3600.0)
    assert all(c["CompletedAt"] is not None for c in await control.contacts())
    return emulator, control


# -- shape ----------------------------------------------------------------------------------


async def test_contact_life_is_published_as_eventbridge_events_to_jsonl(
    start_emulator: Callable[..., Any], client_for: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    emulator = await start_emulator(events_jsonl_path=str(path), **QUICK_LIFE)
    contact_id = await _start(emulator, client_for)

    events = await _events_until_completed(path, contact_id)

    truth = await ControlApi(emulator.url).contact(contact_id)
    assert [e["detail"]["eventType"] for e in events] == LIFE
    contact_arn = f"{INSTANCE_ARN}/contact/{contact_id}"
    for event in events:
        assert set(event) == ENVELOPE_KEYS
        assert event["source"] == "aws.connect"
        assert event["detail-type"] == "Amazon Connect Contact Event"
        assert event["version"] == "0"
        assert UUID.fullmatch(event["id"])
        assert event["account"] == "123456789012"
        assert event["region"] == "us-east-1"
        assert ISO_S.fullmatch(event["time"]), event["time"]
        assert event["resources"] == [contact_arn, INSTANCE_ARN]
        detail = event["detail"]
        assert _camel_case_keys(detail) == []
        assert detail["contactId"] == contact_id
        assert detail["channel"] == "VOICE"
        assert detail["initiationMethod"] == "WEBRTC_API"
        assert detail["instanceArn"] == INSTANCE_ARN
        assert detail["tags"] == {"aws:connect:instanceId": INSTANCE_ID}
        assert detail["initiationTimestamp"] == _iso(truth["CreatedAt"])
        for stamp in (
            detail["initiationTimestamp"],
            detail.get("queueInfo", {}).get("enqueueTimestamp", PLACEHOLDER),
            detail.get("agentInfo", {}).get("connectedToAgentTimestamp", PLACEHOLDER),
            detail.get("disconnectTimestamp", PLACEHOLDER),
        ):
            assert ISO_MS.fullmatch(stamp), stamp
    assert len({e["id"] for e in events}) == len(LIFE)
    initiated, _, queued, connected, disconnected, completed = (e["detail"] for e in events)
    assert "queueInfo" not in initiated
    assert "agentInfo" not in initiated
    assert queued["queueInfo"] == {
        "queueType": "STANDARD",
        "queueArn": queued["queueInfo"]["queueArn"],
        "enqueueTimestamp": _iso(truth["EnqueuedAt"]),
    }
    assert queued["queueInfo"]["queueArn"].startswith(f"{INSTANCE_ARN}/queue/")
    assert "agentInfo" not in queued
    assert connected["agentInfo"] == {
        "agentArn": f"{INSTANCE_ARN}/agent/{truth['AgentId']}",
        "connectedToAgentTimestamp": _iso(truth["ConnectedToAgentAt"]),
    }
    assert "disconnectTimestamp" not in connected
    assert disconnected["disconnectTimestamp"] == _iso(truth["DisconnectedAt"])
    assert completed["agentInfo"] == connected["agentInfo"]
    assert completed["disconnectTimestamp"] == disconnected["disconnectTimestamp"]
    assert events[4]["time"] == _iso(truth["DisconnectedAt"])[:19] + "Z"
    assert events[5]["time"] == _iso(truth["CompletedAt"])[:19] + "Z"


async def test_contact_data_updated_carries_placeholder_timestamps_before_any_agent(
    start_emulator: Callable[..., Any], client_for: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    emulator = await start_emulator(events_jsonl_path=str(path), agent_delay_s=(3600.0, 3600.0))
    contact_id = await _start(emulator, client_for)

    async def updated() -> dict[str, Any] | None:
        for event in await _events_of(path, contact_id):
            if event["detail"]["eventType"] == "CONTACT_DATA_UPDATED":
                return dict(event["detail"])
        return None

    detail = await eventually(updated)

    # An agentInfo, yet no agent: only the event type tells what happened.
    assert detail["agentInfo"] == {"connectedToAgentTimestamp": PLACEHOLDER}
    assert detail["connectedToSystemTimestamp"] == PLACEHOLDER
    assert (await ControlApi(emulator.url).contact(contact_id))["ConnectedToAgentAt"] is None


async def test_events_agree_with_what_describe_contact_returns(
    start_emulator: Callable[..., Any], client_for: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    emulator = await start_emulator(events_jsonl_path=str(path), **QUICK_LIFE)
    client = await client_for(emulator)
    contact_id = (await client.start_web_rtc_contact(**start_args()))["ContactId"]
    events = {e["detail"]["eventType"]: e for e in await _events_until_completed(path, contact_id)}

    described = (await client.describe_contact(InstanceId=INSTANCE_ID, ContactId=contact_id))[
        "Contact"
    ]

    agent = described["AgentInfo"]
    completed = events["COMPLETED"]["detail"]
    assert events["COMPLETED"]["resources"][0] == described["Arn"]
    assert completed["initiationTimestamp"] == _iso(described["InitiationTimestamp"].timestamp())
    assert completed["queueInfo"]["queueArn"].endswith("/queue/" + described["QueueInfo"]["Id"])
    assert completed["queueInfo"]["enqueueTimestamp"] == _iso(
        described["QueueInfo"]["EnqueueTimestamp"].timestamp()
    )
    assert completed["agentInfo"]["agentArn"].endswith("/agent/" + agent["Id"])
    assert completed["agentInfo"]["connectedToAgentTimestamp"] == _iso(
        agent["ConnectedToAgentTimestamp"].timestamp()
    )
    assert completed["disconnectTimestamp"] == _iso(described["DisconnectTimestamp"].timestamp())
    assert agent["AfterContactWorkStartTimestamp"] == described["DisconnectTimestamp"]
    assert (
        events["COMPLETED"]["time"]
        == _iso(agent["AfterContactWorkEndTimestamp"].timestamp())[:19] + "Z"
    )


async def test_abandoned_contact_publishes_no_agent_event_and_completes_at_once(
    start_emulator: Callable[..., Any], client_for: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    emulator = await start_emulator(
        events_jsonl_path=str(path), abandon_rate=1.0, agent_delay_s=(0.05, 0.1)
    )
    contact_id = await _start(emulator, client_for)

    events = await _events_until_completed(path, contact_id)

    assert [e["detail"]["eventType"] for e in events] == [
        "INITIATED",
        "CONTACT_DATA_UPDATED",
        "QUEUED",
        "DISCONNECTED",
        "COMPLETED",
    ]
    assert "agentInfo" not in events[-2]["detail"]
    assert "disconnectTimestamp" in events[-2]["detail"]
    truth = await ControlApi(emulator.url).contact(contact_id)
    assert truth["CompletedAt"] == truth["DisconnectedAt"]


async def test_forced_transitions_publish_their_events(
    start_emulator: Callable[..., Any], client_for: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    emulator = await start_emulator(
        events_jsonl_path=str(path), flow_delay_s=30.0, after_contact_work_s=(0.0, 0.0)
    )
    control = ControlApi(emulator.url)
    contact_id = await _start(emulator, client_for)

    await control.connect_agent(contact_id)
    await control.disconnect(contact_id)
    events = await _events_until_completed(path, contact_id)

    assert [e["detail"]["eventType"] for e in events] == LIFE
    await _published_count_reaches(control, len(LIFE))


async def test_contact_events_arrive_on_the_sqs_queue(
    start_emulator: Callable[..., Any],
    client_for: ClientFactory,
    sqs_server: LocalSqsServer,
    sqs_client: SQSClient,
    sqs_queue: str,
) -> None:
    emulator = await start_emulator(
        events_queue_url=sqs_queue, events_endpoint_url=sqs_server.url, **QUICK_LIFE
    )
    contact_id = await _start(emulator, client_for)
    received: list[dict[str, Any]] = []

    async def whole_life() -> bool:
        answer = await sqs_client.receive_message(
            QueueUrl=sqs_queue, MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        for message in answer.get("Messages", []):
            received.append(json.loads(message["Body"]))
            await sqs_client.delete_message(
                QueueUrl=sqs_queue, ReceiptHandle=message["ReceiptHandle"]
            )
        return len(received) >= len(LIFE)

    await eventually(whole_life)

    assert sorted(r["detail"]["eventType"] for r in received) == sorted(LIFE)
    assert {r["detail"]["contactId"] for r in received} == {contact_id}
    assert {r["source"] for r in received} == {"aws.connect"}
    assert {r["detail-type"] for r in received} == {"Amazon Connect Contact Event"}
    await _published_count_reaches(ControlApi(emulator.url), len(LIFE))


# -- best-effort delivery -------------------------------------------------------------------


async def test_about_half_the_events_are_dropped_at_drop_rate_one_half_and_listed(
    start_clocked_emulator: EmulatorStarter,
    client_for: ClientFactory,
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    _, control = await _lived_contacts(
        start_clocked_emulator,
        client_for,
        clock,
        34,
        events_jsonl_path=str(path),
        events_drop_rate=0.5,
    )
    total = 34 * len(LIFE)  # 204 events

    stats = await _all_delivered(control)
    await _published_count_reaches(control, total - stats["contact_events_dropped"])

    dropped = await control.dropped_events()
    assert 70 <= len(dropped) <= 134
    assert stats["contact_events_dropped"] == len(dropped)
    delivered = await _jsonl(path)
    assert len(delivered) == total - len(dropped)
    assert {e["id"] for e in delivered}.isdisjoint(d["id"] for d in dropped)
    per_contact = {c["ContactId"]: c["ContactEventsDropped"] for c in await control.contacts()}
    assert sum(len(types) for types in per_contact.values()) == len(dropped)
    for entry in dropped:
        assert entry["eventType"] in per_contact[entry["contactId"]]
    delivered_per_contact = Counter(
        (e["detail"]["contactId"], e["detail"]["eventType"]) for e in delivered
    )
    for contact_id, types in per_contact.items():
        for event_type in LIFE:
            expected = 0 if event_type in types else 1
            assert delivered_per_contact[(contact_id, event_type)] == expected


async def test_the_same_seed_drops_the_same_events(
    start_clocked_emulator: EmulatorStarter,
    client_for: ClientFactory,
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    runs: list[list[tuple[int, str]]] = []
    ids: list[set[str]] = []
    for run in range(2):
        _, control = await _lived_contacts(
            start_clocked_emulator,
            client_for,
            clock,
            5,
            events_jsonl_path=str(tmp_path / f"events-{run}.jsonl"),
            events_drop_rate=0.3,
            seed=11,
        )
        order = {c["ContactId"]: n for n, c in enumerate(await control.contacts())}
        dropped = await control.dropped_events()
        runs.append([(order[e["contactId"]], e["eventType"]) for e in dropped])
        ids.append({e["id"] for e in dropped} | set(order))

    assert runs[0]
    assert runs[0] == runs[1]  # the same events of the same contacts, in start order
    assert ids[0].isdisjoint(ids[1])  # under fresh contact and event ids


async def test_duplicated_events_are_delivered_twice_with_the_same_id(
    start_clocked_emulator: EmulatorStarter,
    client_for: ClientFactory,
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    _, control = await _lived_contacts(
        start_clocked_emulator,
        client_for,
        clock,
        34,
        events_jsonl_path=str(path),
        events_duplicate_rate=0.5,
    )
    total = 34 * len(LIFE)

    stats = await _all_delivered(control)
    await _published_count_reaches(control, total + stats["contact_events_duplicated"])

    delivered = await _jsonl(path)
    copies = Counter(e["id"] for e in delivered)
    twice = [event_id for event_id, n in copies.items() if n == 2]
    assert len(copies) == total
    assert set(copies.values()) == {1, 2}
    assert len(twice) == stats["contact_events_duplicated"]
    assert 70 <= len(twice) <= 134
    first_of: dict[str, dict[str, Any]] = {}
    for event in delivered:
        assert first_of.setdefault(event["id"], event) == event


async def test_delayed_events_arrive_out_of_order_yet_all_arrive(
    start_clocked_emulator: EmulatorStarter,
    client_for: ClientFactory,
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    _, control = await _lived_contacts(
        start_clocked_emulator,
        client_for,
        clock,
        10,
        events_jsonl_path=str(path),
        events_delay_s=(0.05, 0.6),
    )

    await _published_count_reaches(control, 10 * len(LIFE))

    arrival: dict[str, list[str]] = {}
    for event in await _jsonl(path):
        arrival.setdefault(event["detail"]["contactId"], []).append(event["detail"]["eventType"])
    assert all(sorted(types) == sorted(LIFE) for types in arrival.values())
    assert any(types != LIFE for types in arrival.values())


async def test_delivery_knobs_change_at_run_time(
    start_emulator: Callable[..., Any], client_for: ClientFactory, tmp_path: Path
) -> None:
    path = tmp_path / "events.jsonl"
    emulator = await start_emulator(events_jsonl_path=str(path), flow_delay_s=3600.0)
    control = ControlApi(emulator.url)

    config = await control.patch_config(
        events_drop_rate=1.0, events_duplicate_rate=0.25, events_delay_s=[0.0, 0.01]
    )
    contact_id = await _start(emulator, client_for)

    assert (config["events_drop_rate"], config["events_delay_s"]) == (1.0, [0.0, 0.01])
    truth = await control.contact(contact_id)
    assert truth["ContactEventsDropped"] == ["INITIATED", "CONTACT_DATA_UPDATED"]
    assert [d["contactId"] for d in await control.dropped_events()] == [contact_id] * 2
    assert (await control.stats())["contact_events_published"] == 0
