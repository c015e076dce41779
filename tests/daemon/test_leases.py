"""The in-flight table: a settled message stays settled, whatever the visibility heartbeat was
doing when it settled, and counts as held until its settling reaches the queue."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import anyio.lowlevel

from orchestrator.daemon.leases import Leases
from orchestrator.metrics import Metrics
from orchestrator.sqs import QueueMessage, QueueSource
from orchestrator.testing.memory_queue import MemoryQueue
from tests.support import eventually
from tests.support.clock import SteppingClock

UNSTARTED_S = 15
#: The heartbeat's period for that unstarted timeout (max(0.5, UNSTARTED_S / 12)).
BEAT_S = UNSTARTED_S / 12


@dataclass
class Beating:
    """One started message held while the heartbeat runs, its first beat just begun."""

    clock: SteppingClock
    queue: MemoryQueue
    leases: Leases
    message: QueueMessage

    async def visible(self) -> bool:
        return bool(await self.queue.receive(1, wait_time_s=0, visibility_timeout_s=UNSTARTED_S))


@asynccontextmanager
async def first_beat(
    source: Callable[[MemoryQueue], QueueSource] = lambda queue: queue,
) -> AsyncIterator[Beating]:
    clock = SteppingClock()
    queue = MemoryQueue(clock=clock.monotonic)
    queue.send("body")
    [message] = await queue.receive(1, wait_time_s=0, visibility_timeout_s=UNSTARTED_S)
    leases = Leases(
        source(queue),
        visibility_timeout_s=30,
        unstarted_visibility_timeout_s=UNSTARTED_S,
        metrics=Metrics(),
        clock=clock,
    )
    # Started: due for the full timeout's extension at the next beat.
    leases.mark_started(leases.take(message))
    async with anyio.create_task_group() as tg:
        tg.start_soon(leases.heartbeat)
        await eventually(lambda: clock.sleeps == 1, message="the heartbeat to sleep")
        clock.advance(BEAT_S)
        yield Beating(clock, queue, leases, message)
        tg.cancel_scope.cancel()


async def hand_back_during_a_beat(checkpoints: int) -> bool:
    """Hand a started message back `checkpoints` scheduler turns after the heartbeat wakes to
    extend it; whether the message is visible once that beat is over."""
    async with first_beat() as beating:
        for _ in range(checkpoints):
            await anyio.lowlevel.checkpoint()
        assert await beating.leases.hand_back(beating.message, 0, reason="rejected")
        # The heartbeat sleeps again only once the beat's extensions are over.
        await eventually(lambda: beating.clock.sleeps == 2, message="the beat to end")
    return await beating.visible()


async def test_an_extension_never_lands_after_the_hand_back_it_raced() -> None:
    """A beat picks the messages due for extension, then extends each in a task of its own. A
    hand-back between the two used to be followed by the extension, which hid the message again
    for the full timeout: a draining worker then saw an empty queue and stopped with the message
    still in it (tests/reliability/test_memory.py, on a slow machine: 238 of 240 in the DLQ).
    Every interleaving is tried: the hand-back before the beat, between its choice and its
    extension, and after the extension."""
    visible = [await hand_back_during_a_beat(turns) for turns in range(16)]
    assert all(visible), [turns for turns, shown in enumerate(visible) if not shown]


class GatedExtensions:
    """A `MemoryQueue` whose visibility extensions (any change but a hand-back's 0) wait for
    `gate`: an extension still on its way to a slow queue."""

    def __init__(self, queue: MemoryQueue) -> None:
        self.queue = queue
        self.gate = anyio.Event()
        self.extending = 0

    async def receive(
        self, max_messages: int, *, wait_time_s: float, visibility_timeout_s: int
    ) -> list[QueueMessage]:
        return await self.queue.receive(
            max_messages, wait_time_s=wait_time_s, visibility_timeout_s=visibility_timeout_s
        )

    async def delete(self, message: QueueMessage) -> None:
        await self.queue.delete(message)

    async def change_visibility(self, message: QueueMessage, timeout_s: int) -> None:
        if timeout_s:
            self.extending += 1
            await self.gate.wait()
        await self.queue.change_visibility(message, timeout_s)

    async def max_receive_count(self) -> int | None:
        return await self.queue.max_receive_count()


async def test_a_message_stays_held_until_its_ack_reaches_the_queue() -> None:
    """The worker's room is `max_in_flight - len(leases)`. An ack that waits for an extension on
    its way must keep its message counted until the delete goes out: released at once, it let
    the worker receive a third message with max_in_flight 2 while the acked one was still
    hidden in the queue (tests/daemon/test_worker_lifecycle.py, under load)."""
    async with first_beat(GatedExtensions) as b:
        source = b.leases.source
        assert isinstance(source, GatedExtensions)
        await eventually(lambda: source.extending == 1, message="the extension to be out")
        acked = anyio.Event()

        async def ack() -> None:
            assert await b.leases.ack(b.message)
            acked.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(ack)
            await eventually(lambda: b.leases.settling == 1, message="the ack to wait")
            assert (len(b.leases), len(b.queue)) == (1, 1)
            source.gate.set()
            await acked.wait()
        assert (len(b.leases), len(b.queue)) == (0, 0)
