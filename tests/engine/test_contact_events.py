"""Contact events in the engine: parsing queue bodies, and delivering events to local watches."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from orchestrator.connect.operations import DEFAULT_QUOTAS, Operation, Quota
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.engine.contact_events import (
    ContactEvent,
    LocalContactEvents,
    NotAContactEvent,
    parse_contact_event,
)
from orchestrator.engine.doorbells import ContactNotifier, Doorbell, EarlyEvents
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.watch import WatchPolicy
from orchestrator.metrics import Metrics
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from tests.support import eventually
from tests.support.clock import SteppingClock, VirtualClock
from tests.support.engine import call_request, make_engine, polls_by_request, started_contact
from tests.support.peers import ClientFactory, emulator_config

CONTACT = "11111111-1111-1111-1111-111111111111"
INSTANCE_ARN = (
    "arn:aws:connect:us-east-1:111122223333:instance/12345678-aaaa-bbbb-cccc-123456789012"
)

#: AWS's documented sample (voice call connected to an agent).
SAMPLE: dict[str, Any] = {
    "version": "0",
    "id": "abcabcab-abca-abca-abca-abcabcabcabc",
    "detail-type": "Amazon Connect Contact Event",
    "source": "aws.connect",
    "account": "111122223333",
    "time": "2021-08-04T17:43:48Z",
    "region": "us-east-1",
    "resources": ["contactArn", "instanceArn"],
    "detail": {
        "initiationTimestamp": "2021-08-04T17:17:53.000Z",
        "contactId": CONTACT,
        "channel": "VOICE",
        "instanceArn": INSTANCE_ARN,
        "initiationMethod": "INBOUND",
        "eventType": "CONNECTED_TO_AGENT",
        "agentInfo": {
            "agentArn": f"{INSTANCE_ARN}/agent/a",
            "connectedToAgentTimestamp": "2021-08-04T17:29:09.000Z",
        },
        "queueInfo": {
            "queueType": "STANDARD",
            "queueArn": f"{INSTANCE_ARN}/queue/q",
            "enqueueTimestamp": "2021-08-04T17:29:04.000Z",
        },
        "tags": {"aws:connect:instanceId": "12345678-aaaa-bbbb-cccc-123456789012"},
    },
}


def envelope(event_type: str = "CONNECTED_TO_AGENT", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(json.dumps(SAMPLE))
    body["detail"]["eventType"] = event_type
    body.update(changes)
    return body


# -- parsing ---------------------------------------------------------------------------------


def test_documented_sample_parses_to_a_contact_event() -> None:
    event = parse_contact_event(json.dumps(SAMPLE))

    assert event == ContactEvent(
        event_id="abcabcab-abca-abca-abca-abcabcabcabc",
        contact_id=CONTACT,
        event_type="CONNECTED_TO_AGENT",
        time="2021-08-04T17:43:48Z",
        instance_arn=INSTANCE_ARN,
        queue_id="q",  # the last part of queueArn: the Id DescribeContact's QueueInfo gives
        enqueued_at=1628098144.0,  # 2021-08-04T17:29:04.000Z
    )
    assert ContactEvent.from_json(event.to_json()) == event


def test_a_replica_reads_the_fanned_out_form_of_an_older_or_newer_replica() -> None:
    older = '{"event_id":"e","contact_id":"c","event_type":"QUEUED","time":null}'
    newer = '{"event_id":"e","contact_id":"c","event_type":"QUEUED","later_field":[1]}'

    assert ContactEvent.from_json(older) == ContactEvent("e", "c", "QUEUED")
    assert ContactEvent.from_json(newer) == ContactEvent("e", "c", "QUEUED")


@pytest.mark.parametrize(
    ("queue_info", "placement"),
    [
        (
            {
                "QueueArn": f"{INSTANCE_ARN}/queue/q2",
                "EnqueueTimestamp": "2021-08-04T17:29:04.250Z",
            },
            ("q2", 1628098144.25),
        ),
        (
            {"queueArn": f"{INSTANCE_ARN}/queue/q", "enqueueTimestamp": "1970-01-01T00:00:00.001Z"},
            None,
        ),
        ({"queueArn": f"{INSTANCE_ARN}/queue/q", "enqueueTimestamp": "yesterday"}, None),
        ({"queueArn": f"{INSTANCE_ARN}/queue/", "enqueueTimestamp": "2021-08-04T17:29:04Z"}, None),
        ({"queueArn": "not-an-arn", "enqueueTimestamp": "2021-08-04T17:29:04Z"}, None),
        ({"enqueueTimestamp": "2021-08-04T17:29:04Z"}, None),
        ("queue", None),
    ],
)
def test_where_the_contact_waits_comes_from_queue_info_never_from_a_placeholder(
    queue_info: Any, placement: tuple[str, float] | None
) -> None:
    queued = envelope("QUEUED")
    queued["detail"]["queueInfo"] = queue_info

    parsed = parse_contact_event(json.dumps(queued))

    assert parsed.event_type == "QUEUED"  # a bad queueInfo never refuses the event
    if placement is None:
        assert (parsed.queue_id, parsed.enqueued_at) == (None, None)
    else:
        assert (parsed.queue_id, parsed.enqueued_at) == pytest.approx(placement)


def test_rebranded_detail_type_and_sns_wrapped_envelopes_parse() -> None:
    rebranded = envelope(**{"detail-type": "Connect Customer Contact Event"})
    wrapped = {"Type": "Notification", "MessageId": "m-1", "Message": json.dumps(SAMPLE)}

    assert parse_contact_event(json.dumps(rebranded)).event_type == "CONNECTED_TO_AGENT"
    assert parse_contact_event(json.dumps(wrapped)).contact_id == CONTACT
    assert parse_contact_event(json.dumps(SAMPLE).encode()).contact_id == CONTACT


def test_pascal_case_keys_unknown_types_and_fields_are_accepted() -> None:
    pascal = {
        "Id": "e-1",
        "detail-type": "Amazon Connect Contact Event",
        "Detail": {"ContactId": CONTACT, "EventType": "Disconnected", "Whatever": {"x": 1}},
        "NewTopLevelField": True,
    }
    future = envelope("SOMETHING_CONNECT_ADDS_LATER", extra=[1, 2])

    assert parse_contact_event(json.dumps(pascal)).event_type == "DISCONNECTED"
    assert parse_contact_event(json.dumps(future)).event_type == "SOMETHING_CONNECT_ADDS_LATER"


def test_the_event_type_decides_never_an_agent_or_a_placeholder_timestamp() -> None:
    update = envelope("CONTACT_DATA_UPDATED")
    update["detail"]["agentInfo"]["connectedToAgentTimestamp"] = "1970-01-01T00:00:00.001Z"

    assert parse_contact_event(json.dumps(update)).event_type == "CONTACT_DATA_UPDATED"


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        "",
        "[1, 2]",
        '"a string"',
        json.dumps({"RequestId": "r-1", "InstanceId": "i"}),  # a call request, wrong queue
        json.dumps(envelope(**{"detail-type": "EC2 Instance State-change Notification"})),
        json.dumps({"Type": "Notification", "Message": "{not json"}),
        json.dumps({**SAMPLE, "detail": "nope"}),
        json.dumps({**SAMPLE, "detail": {**SAMPLE["detail"], "contactId": None}}),
        json.dumps({k: v for k, v in SAMPLE.items() if k != "id"}),
        json.dumps({**SAMPLE, "detail": {**SAMPLE["detail"], "eventType": ""}}),
    ],
)
def test_bodies_that_are_not_contact_events_raise(body: str) -> None:
    with pytest.raises(NotAContactEvent):
        parse_contact_event(body)


# -- local delivery --------------------------------------------------------------------------


def event(event_type: str, event_id: str = "e-1", contact_id: str = CONTACT) -> ContactEvent:
    return ContactEvent(event_id=event_id, contact_id=contact_id, event_type=event_type)


def rung_by_event(doorbell: Doorbell) -> bool:
    return doorbell.event.is_set() or doorbell.by_event


def outcomes(metrics: Metrics) -> dict[str, float]:
    return {
        labels["outcome"]: value
        for labels, value in metrics.samples("orchestrator_contact_events_total")
    }


async def test_connected_and_disconnected_events_ring_the_watch_as_events() -> None:
    notifier, metrics = ContactNotifier(), Metrics()
    local = LocalContactEvents(notifier, metrics=metrics, clock=VirtualClock())
    with notifier.subscribe(CONTACT) as doorbell:
        await local.deliver(event("QUEUED", "e-0"))
        assert not doorbell.event.is_set()  # nothing a poll could decide

        await local.deliver(event("CONNECTED_TO_AGENT", "e-1"))
        assert doorbell.event.is_set() and doorbell.by_event
        doorbell.rearm()
        assert not rung_by_event(doorbell)

        await local.deliver(event("DISCONNECTED", "e-2"))
        assert doorbell.event.is_set() and doorbell.by_event

    assert outcomes(metrics) == {"matched": 2}
    assert metrics.value("orchestrator_contact_events_received_total", {"type": "QUEUED"}) == 1


def queued(contact_id: str, queue_id: str, enqueued_at: float, event_id: str) -> ContactEvent:
    return ContactEvent(event_id, contact_id, "QUEUED", queue_id=queue_id, enqueued_at=enqueued_at)


async def test_queued_events_place_watched_contacts_in_their_queue_before_any_poll() -> None:
    metrics, clock = Metrics(), VirtualClock()
    notifier = ContactNotifier(early=EarlyEvents(metrics, clock=clock, ttl_s=30))
    local = LocalContactEvents(notifier, metrics=metrics, clock=clock)
    frontier = notifier.frontier
    with notifier.subscribe("younger"), notifier.subscribe("older") as older:
        await local.deliver(queued("younger", "q1", 2_000_000_010.0, "e-1"))
        await local.deliver(queued("older", "q1", 2_000_000_000.0, "e-2"))
        assert [frontier.position(c) for c in ("older", "younger")] == [0, 1]
        assert not older.event.is_set()  # a QUEUED event wakes nobody

        # Before its watch starts (StartWebRTCContact's answer can come after the event).
        await local.deliver(queued("early", "q1", 2_000_000_005.0, "e-3"))
        assert frontier.position("early") is None
        with notifier.subscribe("early"):
            assert frontier.position("early") == 1

        # Nobody here watches it: forgotten after a while, neither placed nor counted unmatched.
        await local.deliver(queued("foreign", "q1", 2_000_000_001.0, "e-4"))
        clock.advance(31)
        with notifier.subscribe("foreign"):
            assert frontier.position("foreign") is None

    assert len(frontier) == 0  # every watch that left took its place with it
    assert outcomes(metrics) == {}


async def test_a_duplicate_event_id_is_counted_and_rings_nothing() -> None:
    notifier, metrics = ContactNotifier(), Metrics()
    local = LocalContactEvents(notifier, metrics=metrics, clock=VirtualClock())
    with notifier.subscribe(CONTACT) as doorbell:
        await local.deliver(event("CONNECTED_TO_AGENT"))
        doorbell.rearm()
        await local.deliver(event("CONNECTED_TO_AGENT"))
        assert not doorbell.event.is_set()

    assert outcomes(metrics) == {"matched": 1, "duplicate": 1}


async def test_an_event_before_the_watch_subscribes_rings_it_on_arrival() -> None:
    metrics, clock = Metrics(), VirtualClock()
    notifier = ContactNotifier(early=EarlyEvents(metrics, clock=clock, ttl_s=30))
    local = LocalContactEvents(notifier, metrics=metrics, clock=clock)
    await local.deliver(event("CONNECTED_TO_AGENT"))
    clock.advance(10)

    with notifier.subscribe(CONTACT) as doorbell:
        assert doorbell.event.is_set() and doorbell.by_event
    with notifier.subscribe(CONTACT) as again:
        assert not again.event.is_set()  # claimed once

    assert outcomes(metrics) == {"early": 1}


async def test_events_nobody_claims_expire_as_unmatched() -> None:
    metrics, clock = Metrics(), VirtualClock()
    notifier = ContactNotifier(early=EarlyEvents(metrics, clock=clock, ttl_s=30))
    local = LocalContactEvents(notifier, metrics=metrics, clock=clock)
    await local.deliver(event("CONNECTED_TO_AGENT", "e-1", contact_id="foreign"))
    clock.advance(31)

    with notifier.subscribe("foreign") as doorbell:
        assert not doorbell.event.is_set()  # too old to mean anything
    assert outcomes(metrics) == {"unmatched": 1}


async def test_memory_stays_bounded_under_a_flood_of_foreign_events() -> None:
    metrics, clock = Metrics(), VirtualClock()
    early = EarlyEvents(metrics, clock=clock, limit=10)
    local = LocalContactEvents(
        ContactNotifier(early=early), metrics=metrics, clock=clock, dedup_limit=100
    )
    for i in range(1000):
        await local.deliver(event("DISCONNECTED", f"e-{i}", contact_id=f"c-{i}"))

    assert len(local._seen) <= 101 and len(early) <= 11
    assert outcomes(metrics)["unmatched"] >= 980


# -- the watch woken by an event ---------------------------------------------------------------

SLOW = WatchPolicy(queue_aware=False, first_delay_s=100, max_interval_s=100, max_wait_s=900)


async def _started_and_sleeping(
    sink: MemorySink, clock: SteppingClock, notifier: ContactNotifier
) -> LifecycleEvent | None:
    started = next((e for e in sink.events if e.type is EventType.STARTED), None)
    if started is None or clock.sleeping != 1 or len(notifier) != 1:
        return None
    return started


async def test_an_event_wakes_a_slow_watch_which_confirms_with_one_poll(
    client_for: ClientFactory,
) -> None:
    clock = SteppingClock()
    emulator = Emulator(emulator_config(agent_delay_s=(500.0, 500.0)), clock=clock.time)
    sink = MemorySink()
    async with emulator:
        engine = make_engine(await client_for(emulator), sink, clock=clock, watch=SLOW)
        local = LocalContactEvents(engine.notifier, metrics=engine.metrics, clock=clock)
        control = EmulatorControl(emulator.url)
        results: list[LifecycleEvent] = []

        async def run() -> None:
            results.append(await engine.run(call_request("event-1")))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                started = await eventually(
                    lambda: _started_and_sleeping(sink, clock, engine.notifier)
                )
                assert started.contact_id is not None
                # A lying (or early) event first: the confirming poll finds the contact waiting.
                await local.deliver(event("CONNECTED_TO_AGENT", "lie", started.contact_id))
                await eventually(lambda: _started_and_sleeping(sink, clock, engine.notifier))
                assert not results
                await control.connect_agent(started.contact_id)
                await local.deliver(event("CONNECTED_TO_AGENT", "true", started.contact_id))

        (final,) = results
        assert final.type is EventType.SCREEN_SHARING_STARTED
        connected = next(e for e in sink.events if e.type is EventType.AGENT_CONNECTED)
        assert connected.data["polls"] == 2  # one confirmation per event, nothing else
        assert clock.monotonic() == 0.0  # nobody waited for the 100 s pause
        assert (await control.op_stats("DescribeContact"))["calls"] == 2
        assert (
            engine.metrics.value(
                "orchestrator_agent_detection_delay_seconds_count", {"via": "event"}
            )
            == 1
        )


async def test_a_lost_connected_event_is_caught_at_the_next_connection_in_the_queue(
    client_for: ClientFactory,
) -> None:
    clock = SteppingClock()
    emulator = Emulator(
        emulator_config(agent_delay_s=(500.0, 500.0), flow_delay_s=0.0), clock=clock.time
    )
    # Contact events on: a slow safety net, no head polls, connections wake passed contacts.
    policy = WatchPolicy(
        queue_aware=False, wake_passed=True, first_delay_s=100, max_interval_s=100, jitter=0
    )
    sink = MemorySink()
    async with emulator:
        engine = make_engine(await client_for(emulator), sink, clock=clock, watch=policy)
        local = LocalContactEvents(engine.notifier, metrics=engine.metrics, clock=clock)
        control = EmulatorControl(emulator.url)
        results: list[LifecycleEvent] = []

        async def run(request_id: str) -> None:
            results.append(await engine.run(call_request(request_id)))

        def started(request_id: str) -> str | None:
            return started_contact(sink.events, request_id)

        async def queued_event(contact_id: str) -> ContactEvent:
            truth = await control.contact(contact_id)
            return queued(contact_id, truth["QueueId"], truth["EnqueuedAt"], f"q-{contact_id}")

        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run, "older")
                await eventually(lambda: started("older") is not None and clock.sleeping == 1)
                clock.advance(1)  # the younger contact is enqueued a second later
                tg.start_soon(run, "younger")
                await eventually(lambda: started("younger") is not None and clock.sleeping == 2)
                older, younger = started("older"), started("younger")
                assert older is not None and younger is not None
                for contact_id in (younger, older):
                    await local.deliver(await queued_event(contact_id))
                assert len(engine.notifier.frontier) == 2  # placed without a single poll
                await control.connect_agent(older)
                await control.connect_agent(younger)
                # The older contact's CONNECTED_TO_AGENT event is lost; the younger one's comes.
                await local.deliver(event("CONNECTED_TO_AGENT", "c-younger", younger))

        assert {e.request_id: e.type for e in results} == {
            "older": EventType.SCREEN_SHARING_STARTED,
            "younger": EventType.SCREEN_SHARING_STARTED,
        }
        polls = polls_by_request(sink.events)
        assert polls == {"older": 1, "younger": 1}  # one DescribeContact each, no more
        assert clock.monotonic() == 1.0  # nobody waited for the 100 s safety net
        served = engine.metrics.value("orchestrator_passed_wakes_total", {"result": "served"})
        assert served == 1
        assert (await control.op_stats("DescribeContact"))["calls"] == 2


async def test_an_event_lifts_a_poll_already_waiting_for_its_token_to_the_front(
    client_for: ClientFactory,
) -> None:
    clock = SteppingClock()
    emulator = Emulator(
        emulator_config(agent_delay_s=(500.0, 500.0), talk_time_s=(900.0, 900.0), flow_delay_s=0.0),
        clock=clock.time,
    )
    # One DescribeContact per 100 s: scheduled polls queue for tokens, oldest contact first.
    budget = RateBudget(
        {**DEFAULT_QUOTAS, Operation.DESCRIBE_CONTACT: Quota(0.01, 2)}, headroom=0, clock=clock
    )
    policy = WatchPolicy(queue_aware=False, first_delay_s=10, max_interval_s=10, jitter=0)
    sink = MemorySink()
    async with emulator:
        engine = make_engine(
            await client_for(emulator), sink, clock=clock, watch=policy, budget=budget
        )
        local = LocalContactEvents(engine.notifier, metrics=engine.metrics, clock=clock)
        control = EmulatorControl(emulator.url)
        describe = budget[Operation.DESCRIBE_CONTACT]
        finished: list[str] = []

        async def run(request_id: str) -> None:
            await engine.run(call_request(request_id))
            finished.append(request_id)

        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                for watching, request_id in enumerate(("oldest", "older", "youngest"), start=1):
                    tg.start_soon(run, request_id)
                    await eventually(lambda: clock.sleeping == watching)  # noqa: B023
                    clock.advance(1)
                clock.advance(7)  # t=10: the oldest polls with the one token
                await eventually(lambda: describe.granted == 1)
                clock.advance(2)  # t=12: the other two wait for the next token (t=110)
                await eventually(lambda: describe.waiting == 2)
                youngest = started_contact(sink.events, "youngest")
                assert youngest is not None
                await control.connect_agent(youngest)
                await local.deliver(event("CONNECTED_TO_AGENT", "c-youngest", youngest))
                await anyio.wait_all_tasks_blocked()
                clock.advance(99)  # t=111: the next token (t=110) goes to the confirmation
                await eventually(lambda: finished == ["youngest"])
                assert describe.waiting == 2  # "older" still waits, "oldest" queued behind it
                tg.cancel_scope.cancel()

        polls = polls_by_request(sink.events)
        assert polls == {"youngest": 1}  # its queued poll became the confirmation
        assert (
            engine.metrics.value(
                "orchestrator_agent_detection_delay_seconds_count", {"via": "event"}
            )
            == 1
        )


async def test_an_event_that_arrived_before_the_watch_makes_it_poll_at_once(
    client_for: ClientFactory,
) -> None:
    clock = SteppingClock()
    emulator = Emulator(emulator_config(agent_delay_s=(0.0, 0.0)), clock=clock.time)
    sink = MemorySink()
    async with emulator:
        engine = make_engine(await client_for(emulator), sink, clock=clock, watch=SLOW)
        local = LocalContactEvents(engine.notifier, metrics=engine.metrics, clock=clock)

        class EventFirst(MemorySink):
            """Delivers the contact's CONNECTED_TO_AGENT event as soon as it exists, before
            the watch subscribes (as Connect may, before StartWebRTCContact answers)."""

            async def publish(self, events: Any) -> None:
                for e in events:
                    if e.type is EventType.STARTED:
                        await local.deliver(event("CONNECTED_TO_AGENT", "e", e.contact_id))
                await sink.publish(events)

        engine.sink = EventFirst()
        with anyio.fail_after(10):
            final = await engine.run(call_request("early-1"))

        assert final.type is EventType.SCREEN_SHARING_STARTED
        assert clock.monotonic() == 0.0
        assert outcomes(engine.metrics) == {"early": 1}
        assert (
            engine.metrics.value(
                "orchestrator_agent_detection_delay_seconds_count", {"via": "event"}
            )
            == 1
        )
