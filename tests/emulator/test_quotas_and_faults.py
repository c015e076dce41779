"""Quotas (token buckets, the concurrency cap) and injected faults (errors, drops, latency,
eventual consistency, seeds)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from orchestrator.testing.emulator import Quota
from tests.conftest import INSTANCE_ID
from tests.emulator._helpers import ControlApi, ManualClock, SyncControlApi, answer_of, start_args
from tests.support import eventually, eventually_sync

if TYPE_CHECKING:
    from collections.abc import Callable

    from types_aiobotocore_connect import ConnectClient

    from orchestrator.testing.emulator import Emulator
    from tests.emulator._helpers import (
        Boto3Factory,
        ClientFactory,
        EmulatorStarter,
        ThreadStarter,
    )

OTHER_ACCESS_KEY = "AKIATESTEXAMPLE00002"


async def _describe_outcomes(client: ConnectClient, contact_id: str, calls: int) -> list[str]:
    """'ok' or the error code of each of `calls` DescribeContact calls in a row."""
    outcomes = []
    for _ in range(calls):
        try:
            await client.describe_contact(InstanceId=INSTANCE_ID, ContactId=contact_id)
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(answer_of(exc).code)
    return outcomes


# -- request quotas -------------------------------------------------------------------------


async def test_describe_quota_passes_the_burst_then_throttles_until_refilled(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    emulator = await start_clocked_emulator(quotas={"DescribeContact": Quota(rate=1, burst=3)})
    client = await client_for(emulator)
    control = ControlApi(emulator.url)
    contact_id = (await client.start_web_rtc_contact(**start_args()))["ContactId"]

    burst = await _describe_outcomes(client, contact_id, 4)
    clock.advance(1.0)  # one token back at 1 request per second
    refilled = await _describe_outcomes(client, contact_id, 2)

    assert burst == ["ok", "ok", "ok", "ThrottlingException"]
    assert refilled == ["ok", "ThrottlingException"]
    stats = await control.op_stats("DescribeContact")
    assert (stats["calls"], stats["successes"], stats["throttled"]) == (6, 4, 2)


async def test_default_describe_quota_allows_a_burst_of_fifteen(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory
) -> None:
    client = await client_for(await start_clocked_emulator())
    contact_id = (await client.start_web_rtc_contact(**start_args()))["ContactId"]

    outcomes = await _describe_outcomes(client, contact_id, 16)

    assert outcomes == ["ok"] * 15 + ["ThrottlingException"]


async def test_default_start_quota_allows_a_burst_of_five(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory
) -> None:
    client = await client_for(await start_clocked_emulator())
    for _ in range(5):
        await client.start_web_rtc_contact(**start_args())

    with pytest.raises(client.exceptions.TooManyRequestsException) as raised:
        await client.start_web_rtc_contact(**start_args())

    assert answer_of(raised.value).message == "Rate exceeded"


async def test_throttled_start_creates_no_contact(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(quotas={"StartWebRTCContact": Quota(rate=0.01, burst=1)})
    client = await client_for(emulator)
    control = ControlApi(emulator.url)
    await client.start_web_rtc_contact(**start_args())

    with pytest.raises(client.exceptions.TooManyRequestsException):
        await client.start_web_rtc_contact(**start_args())

    assert len(await control.contacts()) == 1
    stats = await control.op_stats("StartWebRTCContact")
    assert (stats["throttled"], stats["concurrency_limited"]) == (1, 0)


async def test_disabled_quotas_never_throttle(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    tiny = Quota(rate=0.01, burst=1)
    emulator = await start_emulator(
        quotas_enabled=False, quotas={"DescribeContact": tiny, "StartWebRTCContact": tiny}
    )
    client = await client_for(emulator)
    control = ControlApi(emulator.url)
    for _ in range(5):
        await client.start_web_rtc_contact(**start_args())
    contact_id = (await control.contacts())[0]["ContactId"]

    outcomes = await _describe_outcomes(client, contact_id, 20)

    assert outcomes == ["ok"] * 20
    assert (await control.op_stats("DescribeContact"))["throttled"] == 0
    assert (await control.op_stats("StartWebRTCContact"))["throttled"] == 0


async def test_quota_is_shared_by_every_key_of_the_account(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(quotas={"DescribeContact": Quota(rate=0.01, burst=2)})
    first_key = await client_for(emulator)
    second_key = await client_for(emulator, access_key=OTHER_ACCESS_KEY)
    contact_id = (await first_key.start_web_rtc_contact(**start_args()))["ContactId"]

    first = await _describe_outcomes(first_key, contact_id, 1)
    second = await _describe_outcomes(second_key, contact_id, 2)

    assert first == ["ok"]
    assert second == ["ok", "ThrottlingException"]


async def test_quota_changed_at_runtime_applies_to_the_next_call(
    connect_client: ConnectClient, control: ControlApi
) -> None:
    contact_id = (await connect_client.start_web_rtc_contact(**start_args()))["ContactId"]

    config = await control.patch_config(quotas={"DescribeContact": "0.01/2"})
    outcomes = await _describe_outcomes(connect_client, contact_id, 3)

    assert config["quotas"]["DescribeContact"] == {"rate": 0.01, "burst": 2.0}
    assert outcomes == ["ok", "ok", "ThrottlingException"]


# -- concurrency cap ------------------------------------------------------------------------


async def test_concurrency_cap_refuses_a_new_contact_but_not_a_replay(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(max_concurrent_calls=2)
    client = await client_for(emulator)
    control = ControlApi(emulator.url)
    first = await client.start_web_rtc_contact(**start_args(ClientToken="req-1"))
    await client.start_web_rtc_contact(**start_args(ClientToken="req-2"))

    with pytest.raises(client.exceptions.LimitExceededException) as raised:
        await client.start_web_rtc_contact(**start_args(ClientToken="req-3"))
    replay = await client.start_web_rtc_contact(**start_args(ClientToken="req-1"))

    answer = answer_of(raised.value)
    assert answer.status == 429
    assert "concurrent active calls limit" in answer.message
    assert INSTANCE_ID in answer.message
    assert replay["ContactId"] == first["ContactId"]
    assert len(await control.contacts()) == 2
    assert (await control.op_stats("StartWebRTCContact"))["concurrency_limited"] == 1


async def test_disconnected_contact_frees_a_concurrent_call_slot(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(max_concurrent_calls=2, agent_delay_s=(3600.0, 3600.0))
    client = await client_for(emulator)
    control = ControlApi(emulator.url)
    first = await client.start_web_rtc_contact(**start_args())
    await client.start_web_rtc_contact(**start_args())
    with pytest.raises(client.exceptions.LimitExceededException):
        await client.start_web_rtc_contact(**start_args())

    await control.disconnect(first["ContactId"])
    third = await client.start_web_rtc_contact(**start_args())

    assert third["ContactId"] != first["ContactId"]
    states = sorted(c["State"] for c in await control.contacts())
    assert states == ["DISCONNECTED", "QUEUED", "QUEUED"]


async def test_call_that_ends_on_its_own_frees_its_slot(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    emulator = await start_clocked_emulator(
        max_concurrent_calls=1, agent_delay_s=(0.1, 0.1), talk_time_s=(0.5, 0.5)
    )
    client = await client_for(emulator)
    await client.start_web_rtc_contact(**start_args())
    with pytest.raises(client.exceptions.LimitExceededException):
        await client.start_web_rtc_contact(**start_args())

    clock.advance(1.0)
    second = await client.start_web_rtc_contact(**start_args())

    assert second["ContactId"]


async def test_concurrency_cap_counts_each_instance_separately(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(max_concurrent_calls=1)
    client = await client_for(emulator)
    await client.start_web_rtc_contact(**start_args())

    other = await client.start_web_rtc_contact(**start_args(InstanceId="another-instance"))

    assert other["ContactId"]


# -- injected faults ------------------------------------------------------------------------


async def test_error_rate_one_answers_500_and_counts_a_fault(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(error_rate=1.0)
    client = await client_for(emulator)
    control = ControlApi(emulator.url)

    with pytest.raises(client.exceptions.InternalServiceException) as raised:
        await client.start_web_rtc_contact(**start_args())

    assert answer_of(raised.value).status == 500
    stats = await control.op_stats("StartWebRTCContact")
    assert (stats["calls"], stats["faults"], stats["successes"]) == (1, 1, 0)
    assert await control.contacts() == []


async def test_dropped_response_closes_the_connection_after_the_contact_started(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(drop_rate=1.0)
    client = await client_for(emulator)
    control = ControlApi(emulator.url)

    with pytest.raises(ConnectionClosedError):
        await client.start_web_rtc_contact(**start_args(ClientToken="req-1"))
    contacts = await control.contacts()
    stats = await control.op_stats("StartWebRTCContact")
    await control.patch_config(drop_rate=0.0)
    retried = await client.start_web_rtc_contact(**start_args(ClientToken="req-1"))

    assert [c["ClientToken"] for c in contacts] == ["req-1"]
    assert retried["ContactId"] == contacts[0]["ContactId"]
    assert len(await control.contacts()) == 1
    # aiohttp itself resends an idempotent (PUT) request once when the server hangs up, so the
    # emulator may see the request twice; the ClientToken keeps that to one contact.
    assert stats["dropped"] == stats["faults"] == stats["calls"] >= 1
    assert stats["successes"] == 0


async def test_latency_delays_each_answer(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(latency_ms=(200.0, 200.0))
    client = await client_for(emulator)

    began = time.monotonic()
    await client.start_web_rtc_contact(**start_args())
    elapsed = time.monotonic() - began

    assert elapsed >= 0.2


async def test_new_contact_is_not_found_during_the_consistency_window(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    emulator = await start_clocked_emulator(consistency_delay_s=2.0, quotas_enabled=False)
    client = await client_for(emulator)
    control = ControlApi(emulator.url)
    contact_id = (await client.start_web_rtc_contact(**start_args()))["ContactId"]

    at_once = await _describe_outcomes(client, contact_id, 1)
    clock.advance(1.99)
    almost = await _describe_outcomes(client, contact_id, 1)
    clock.advance(0.01)
    after = await _describe_outcomes(client, contact_id, 1)

    assert at_once == almost == ["ResourceNotFoundException"]
    assert after == ["ok"]
    assert (await control.contact(contact_id))["DescribeContactCalls"] == 3


async def test_new_contact_becomes_visible_once_the_consistency_window_passes(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    window_s = 0.5
    emulator = await start_emulator(consistency_delay_s=window_s, quotas_enabled=False)
    client = await client_for(emulator)
    began = time.monotonic()
    contact_id = (await client.start_web_rtc_contact(**start_args()))["ContactId"]

    first = await _describe_outcomes(client, contact_id, 1)
    first_elapsed = time.monotonic() - began

    async def visible() -> bool:
        return await _describe_outcomes(client, contact_id, 1) == ["ok"]

    await eventually(visible, within=window_s + 5)

    if first_elapsed < window_s:  # only ever assume a lower bound on elapsed time
        assert first == ["ResourceNotFoundException"]
    assert time.monotonic() - began >= window_s


async def _start_sequence(emulator: Emulator, client_for: ClientFactory) -> list[str]:
    client = await client_for(emulator)
    return [(await client.start_web_rtc_contact(**start_args()))["ContactId"] for _ in range(3)]


async def test_an_emulator_restarted_with_the_same_seed_never_reissues_contact_ids(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    first = await _start_sequence(await start_emulator(seed=42), client_for)
    restarted = await _start_sequence(await start_emulator(seed=42), client_for)

    assert len(set(first)) == 3
    assert set(restarted).isdisjoint(first)


def _fate(truth: dict[str, Any]) -> tuple[Any, ...]:
    """What the simulation decided for a contact, relative to its creation (no ids)."""

    def after(stamp: str) -> float | None:
        value = truth[stamp]
        return None if value is None else round(value - truth["CreatedAt"], 6)

    return (
        truth["State"],
        after("ConnectedToAgentAt"),
        after("DisconnectedAt"),
        truth["DisconnectReason"],
    )


async def test_the_same_seed_replays_the_same_simulation_under_fresh_ids(
    start_clocked_emulator: EmulatorStarter, client_for: ClientFactory, clock: ManualClock
) -> None:
    settings: dict[str, Any] = {
        "seed": 42,
        "agent_delay_s": (1.0, 30.0),
        "abandon_rate": 0.4,
        "quotas_enabled": False,
        "max_concurrent_calls": None,
    }
    runs: list[tuple[list[str], list[tuple[Any, ...]]]] = []
    for seed in (42, 42, 43):
        emulator = await start_clocked_emulator(**{**settings, "seed": seed})
        client, control = await client_for(emulator), ControlApi(emulator.url)
        ids = [(await client.start_web_rtc_contact(**start_args()))["ContactId"] for _ in range(8)]
        clock.advance(3600.0)
        runs.append((ids, [_fate(await control.contact(i)) for i in ids]))
    (first_ids, first), (again_ids, again), (_, other) = runs

    assert again == first  # the same delays, abandons and hang-ups, contact by contact
    assert {f[0] for f in first} == {"DISCONNECTED"}
    assert {f[3] for f in first} >= {"CUSTOMER_DISCONNECT"}
    assert other != first
    assert set(again_ids).isdisjoint(first_ids)


async def test_same_seed_gives_the_same_fault_pattern(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    patterns = []
    for _ in range(2):
        client = await client_for(await start_emulator(seed=5, error_rate=0.5))
        outcomes = await _describe_outcomes(client, "c-1", 12)
        patterns.append(outcomes)

    assert patterns[0] == patterns[1]
    assert set(patterns[0]) == {"InternalServiceException", "ResourceNotFoundException"}


# -- boto3 ----------------------------------------------------------------------------------


def test_boto3_sees_quota_concurrency_cap_and_injected_error(
    start_emulator_thread: ThreadStarter, boto3_client_for: Boto3Factory
) -> None:
    thread = start_emulator_thread(
        max_concurrent_calls=1, quotas={"DescribeContact": Quota(rate=0.01, burst=2)}
    )
    client = boto3_client_for(thread)
    control = SyncControlApi(thread.url)
    first = client.start_web_rtc_contact(**start_args(ClientToken="req-1"))
    contact = {"InstanceId": INSTANCE_ID, "ContactId": first["ContactId"]}

    with pytest.raises(client.exceptions.LimitExceededException) as capped:
        client.start_web_rtc_contact(**start_args(ClientToken="req-2"))
    replay = client.start_web_rtc_contact(**start_args(ClientToken="req-1"))
    client.describe_contact(**contact)
    client.describe_contact(**contact)
    with pytest.raises(client.exceptions.ThrottlingException):
        client.describe_contact(**contact)
    control.disconnect(first["ContactId"])
    second = client.start_web_rtc_contact(**start_args(ClientToken="req-2"))
    control.patch_config(error_rate=1.0)
    with pytest.raises(client.exceptions.InternalServiceException):
        client.start_web_rtc_contact(**start_args(ClientToken="req-3"))

    assert "concurrent active calls limit" in answer_of(capped.value).message
    assert replay["ContactId"] == first["ContactId"]
    assert second["ContactId"] != first["ContactId"]
    stats = control.op_stats("DescribeContact")
    assert (stats["calls"], stats["successes"], stats["throttled"]) == (3, 2, 1)
    start_stats = control.op_stats("StartWebRTCContact")
    assert (start_stats["concurrency_limited"], start_stats["faults"]) == (1, 1)


def test_boto3_dropped_response_is_connection_closed_and_retry_finds_the_contact(
    start_emulator_thread: ThreadStarter, boto3_client_for: Boto3Factory
) -> None:
    thread = start_emulator_thread(drop_rate=1.0)
    client = boto3_client_for(thread)
    control = SyncControlApi(thread.url)

    with pytest.raises(ConnectionClosedError):
        client.start_web_rtc_contact(**start_args(ClientToken="req-1"))
    created = control.contacts()
    control.patch_config(drop_rate=0.0)
    retried = client.start_web_rtc_contact(**start_args(ClientToken="req-1"))

    assert [c["ContactId"] for c in created] == [retried["ContactId"]]
    assert len(control.contacts()) == 1
    stats = control.op_stats("StartWebRTCContact")
    assert (stats["calls"], stats["dropped"], stats["successes"]) == (2, 1, 1)


def test_boto3_latency_delays_each_answer(
    start_emulator_thread: ThreadStarter, boto3_client_for: Boto3Factory
) -> None:
    client = boto3_client_for(start_emulator_thread(latency_ms=(200.0, 200.0)))

    began = time.monotonic()
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_contact(InstanceId=INSTANCE_ID, ContactId="c-1")

    assert time.monotonic() - began >= 0.2


def test_boto3_new_contact_becomes_visible_after_the_consistency_window(
    start_emulator_thread: ThreadStarter, boto3_client_for: Boto3Factory
) -> None:
    window_s = 0.5
    thread = start_emulator_thread(consistency_delay_s=window_s, quotas_enabled=False)
    client = boto3_client_for(thread)
    began = time.monotonic()
    contact_id = client.start_web_rtc_contact(**start_args())["ContactId"]

    def visible() -> bool:
        try:
            client.describe_contact(InstanceId=INSTANCE_ID, ContactId=contact_id)
        except client.exceptions.ResourceNotFoundException:
            return False
        return True

    first = visible()
    first_elapsed = time.monotonic() - began
    eventually_sync(visible, within=window_s + 5)

    if first_elapsed < window_s:
        assert first is False
    assert time.monotonic() - began >= window_s
