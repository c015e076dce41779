"""What a watched contact holds while it waits for its agent: the structure the memory figure of
`bench scale` (memory per watched contact) relies on. Counted on live objects, not bytes: one
task per watch (a cancel rings the doorbell, no task waits for it), no connection data kept
once `contact.started` is out, no validated request once the contact exists, no lock or
asyncio event per contact beyond its task's (its doorbell is a `Bell`), and a poll waiting for
its token holds a queue entry, not the call being set up."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import types
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest
from aiobotocore.session import get_session

from orchestrator.connect.gateway import StartedContact, connect_client_config
from orchestrator.connect.operations import DEFAULT_QUOTAS, Operation, Quota
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.engine.cancellation import Cancellation
from orchestrator.engine.events import EventType, LifecycleEvent
from orchestrator.engine.queue_position import PositionPolicy
from orchestrator.engine.request import CallRequest
from orchestrator.engine.watch import WatchPolicy
from orchestrator.testing.processes import emulator_process
from orchestrator.testing.requests import REGION
from orchestrator.testing.waiting import eventually
from tests.support.engine import call_request, make_engine

if TYPE_CHECKING:
    from types_aiobotocore_connect import ConnectClient

WATCHED = 12


class TypesSink:
    """Keeps each event's type only (a sink that kept events would keep their tokens)."""

    name = "types"

    def __init__(self) -> None:
        self.types: Counter[EventType] = Counter()

    async def publish(self, events: Sequence[LifecycleEvent]) -> None:
        self.types.update(e.type for e in events)


@contextlib.asynccontextmanager
async def connect_to_emulator(tmp_path: Path) -> AsyncIterator[ConnectClient]:
    """A Connect client on an emulator in its own process (every task of this loop is then the
    test's or the engine's), whose agents answer in ten minutes."""
    args = ["--seed", "3", "--agent-delay", "600:600", "--max-concurrent-calls", "0"]
    async with (
        emulator_process(args, tmp_path / "emulator.log") as emulator,
        get_session().create_client(
            "connect", region_name=REGION, endpoint_url=emulator.url, config=connect_client_config()
        ) as client,
    ):
        yield client


def live(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


@pytest.mark.parametrize("positions", [False, True], ids=["watch", "watch+positions"])
async def test_a_waiting_contact_holds_one_task_no_connection_data_and_one_event(
    tmp_path: Path, positions: bool
) -> None:
    async with connect_to_emulator(tmp_path) as client:
        sink = TypesSink()
        policy = PositionPolicy() if positions else None
        # No poll within the test (each contact's first is 10 minutes away): none in flight.
        quiet = WatchPolicy(
            first_delay_s=600, max_interval_s=600, max_wait_s=3600, queue_aware=False
        )
        engine = make_engine(client, sink, watch=quiet, positions=policy)
        async with anyio.create_task_group() as tg:
            if engine.positions is not None:
                tg.start_soon(engine.positions.run)
            lock, group = type(anyio.Lock()), type(tg)
            tasks_before, events_before = len(asyncio.all_tasks()), live(asyncio.Event)
            locks_before, groups_before = live(lock), live(group)

            async def run(request_id: str) -> None:
                await engine.run(call_request(request_id), cancellation=Cancellation(request_id))

            for i in range(WATCHED):
                tg.start_soon(run, f"footprint-{i}")
            await eventually(lambda: sink.types[EventType.STARTED] == WATCHED, within=60)
            await eventually(lambda: len(engine.notifier) == WATCHED, message="all watched")
            if positions:
                await eventually(
                    lambda: sink.types[EventType.QUEUE_POSITION] >= WATCHED,
                    within=60,
                    message="positions told",
                )

            assert len(asyncio.all_tasks()) - tasks_before == WATCHED  # one task per watch
            assert live(StartedContact) == 0  # tokens and connection data went with the event
            assert live(CallRequest) == 0  # the validated request went with the start
            # One asyncio event each, its task's (anyio's task handle): the doorbell's is a
            # `Bell`, and none for the cancellation or the position updates (the position
            # loop's one call in flight may hold one more).
            assert live(asyncio.Event) - events_before <= WATCHED + 1
            assert live(lock) == locks_before
            assert live(group) == groups_before  # the start's task group ended with the start
            tg.cancel_scope.cancel()


def coroutines(qualname: str) -> int:
    gc.collect()
    return sum(
        1
        for o in gc.get_objects()
        if isinstance(o, types.CoroutineType) and o.cr_code.co_qualname == qualname
    )


async def test_a_poll_waiting_for_its_token_holds_a_queue_entry_not_the_call(
    tmp_path: Path,
) -> None:
    # At scale nearly every watched contact has a poll waiting for its DescribeContact token or
    # connection: what it holds meanwhile is the memory figure's largest part after the watch.
    async with connect_to_emulator(tmp_path) as client:
        describe = Operation.DESCRIBE_CONTACT
        budget = RateBudget({**DEFAULT_QUOTAS, describe: Quota(0.001, 1.0)})
        await budget[describe].acquire()  # the only token: every poll waits
        eager = WatchPolicy(first_delay_s=0.05, max_interval_s=1, max_wait_s=3600, jitter=0)
        engine = make_engine(client, TypesSink(), watch=eager, budget=budget)
        async with anyio.create_task_group() as tg:
            for i in range(WATCHED):
                tg.start_soon(engine.run, call_request(f"waiting-poll-{i}"))
            await eventually(
                lambda: budget[describe].snapshot()[2] == WATCHED,
                within=60,
                message="every watch's poll waiting for its token",
            )

            assert coroutines("AioConnectGateway._attempt") == 0
            assert coroutines("RetryPolicy.call") == 0
            assert coroutines("AioConnectGateway.describe_contact") == WATCHED
            tg.cancel_scope.cancel()
