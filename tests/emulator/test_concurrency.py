"""Many clients at once: each answer counted once, quotas and the cap hold, tokens stay unique."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from orchestrator.testing.emulator import Quota
from tests.conftest import INSTANCE_ID
from tests.emulator._helpers import ControlApi, SyncControlApi, start_args

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from types_aiobotocore_connect import ConnectClient

    from tests.emulator._helpers import Boto3Factory, ClientFactory, ThreadStarter

OUTCOME_FIELDS = ("successes", "throttled", "concurrency_limited", "client_errors", "faults")


async def _outcome(call: Awaitable[Mapping[str, Any]]) -> tuple[str, Mapping[str, Any]]:
    try:
        return "ok", await call
    except ClientError as error:
        return error.response["Error"]["Code"], {}


def _adds_up(stats: dict[str, int]) -> bool:
    return stats["calls"] == sum(stats[name] for name in OUTCOME_FIELDS)


async def test_two_hundred_concurrent_calls_from_five_clients_are_each_counted_once(
    start_emulator: Callable[..., Any], client_for: ClientFactory
) -> None:
    emulator = await start_emulator(
        agent_delay_s=(3600.0, 3600.0),
        max_concurrent_calls=30,
        quotas={
            # Buckets that do not refill during the test: exactly the burst passes.
            "StartWebRTCContact": Quota(rate=0.001, burst=41.0),
            "DescribeContact": Quota(rate=0.001, burst=60.0),
        },
    )
    clients: list[ConnectClient] = [await client_for(emulator) for _ in range(5)]
    control = ControlApi(emulator.url)
    seed_contact = (await clients[0].start_web_rtc_contact(**start_args()))["ContactId"]
    # 80 starts with their own token, 20 that replay 5 tokens (4 each), 100 describes.
    tokens = [str(uuid.uuid4()) for _ in range(80)] + [f"shared-{i % 5}" for i in range(20)]
    starts = [
        _outcome(clients[i % 5].start_web_rtc_contact(**start_args(ClientToken=token)))
        for i, token in enumerate(tokens)
    ]
    describes = [
        _outcome(clients[i % 5].describe_contact(InstanceId=INSTANCE_ID, ContactId=seed_contact))
        for i in range(100)
    ]

    results = await asyncio.gather(*starts, *describes)

    start_results, describe_results = results[:100], results[100:]
    start_codes = Counter(code for code, _ in start_results)
    describe_codes = Counter(code for code, _ in describe_results)
    assert set(start_codes) <= {"ok", "TooManyRequestsException", "LimitExceededException"}
    assert set(describe_codes) <= {"ok", "ThrottlingException"}
    start_stats = await control.op_stats("StartWebRTCContact")
    describe_stats = await control.op_stats("DescribeContact")
    assert start_stats["calls"] == 101
    assert start_stats["successes"] == start_codes["ok"] + 1
    assert start_stats["throttled"] == start_codes["TooManyRequestsException"] == 60
    assert start_stats["concurrency_limited"] == start_codes["LimitExceededException"]
    assert describe_stats["calls"] == 100
    assert describe_stats["successes"] == describe_codes["ok"]
    assert describe_stats["throttled"] == describe_codes["ThrottlingException"] == 40
    assert _adds_up(start_stats)
    assert _adds_up(describe_stats)
    # One contact per token, never more than the cap, and nothing the clients were not told of.
    contact_of: dict[str, set[str]] = {}
    for token, (code, answer) in zip(tokens, start_results, strict=True):
        if code == "ok":
            contact_of.setdefault(token, set()).add(answer["ContactId"])
    assert all(len(ids) == 1 for ids in contact_of.values())
    truth = await control.contacts()
    assert {c["ContactId"] for c in truth} == {seed_contact}.union(*contact_of.values())
    assert len(truth) <= 30
    assert start_codes["LimitExceededException"] > 0
    by_id = {c["ContactId"]: c for c in truth}
    assert by_id[seed_contact]["DescribeContactCalls"] == describe_codes["ok"]
    assert (await control.stats())["contacts"] == len(truth)


def test_boto3_clients_on_eight_threads_share_one_emulator_thread_safely(
    start_emulator_thread: ThreadStarter, boto3_client_for: Boto3Factory
) -> None:
    thread = start_emulator_thread(
        quotas_enabled=False, max_concurrent_calls=None, agent_delay_s=(3600.0, 3600.0)
    )
    control = SyncControlApi(thread.url)

    def worker(_: int) -> list[str]:
        client = boto3_client_for(thread)
        started = []
        for _ in range(12):
            contact_id = client.start_web_rtc_contact(**start_args())["ContactId"]
            client.describe_contact(InstanceId=INSTANCE_ID, ContactId=contact_id)
            started.append(contact_id)
        return started

    with ThreadPoolExecutor(max_workers=8) as pool:
        started = [cid for ids in pool.map(worker, range(8)) for cid in ids]

    truth = control.contacts()
    assert len(started) == len(set(started)) == 96
    assert {c["ContactId"] for c in truth} == set(started)
    assert all(c["DescribeContactCalls"] == 1 for c in truth)
    for operation in ("StartWebRTCContact", "DescribeContact"):
        stats = control.op_stats(operation)
        assert (stats["calls"], stats["successes"]) == (96, 96)
        assert _adds_up(stats)
