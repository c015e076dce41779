"""The in-flight table: a settled message stays settled, whatever the visibility heartbeat was
doing when it settled."""

from __future__ import annotations

import anyio
import anyio.lowlevel

from orchestrator.daemon.leases import Leases
from orchestrator.metrics import Metrics
from orchestrator.testing.memory_queue import MemoryQueue
from tests.support import eventually
from tests.support.clock import SteppingClock

UNSTARTED_S = 15
#: The heartbeat's period for that unstarted timeout (max(0.5, UNSTARTED_S / 12)).
BEAT_S = UNSTARTED_S / 12


async def hand_back_during_a_beat(checkpoints: int) -> bool:
    """Hand a started message back `checkpoints` scheduler turns after the heartbeat wakes to
    extend it; whether the message is visible once that beat is over."""
    clock = SteppingClock()
    queue = MemoryQueue(clock=clock.monotonic)
    queue.send("body")
    [message] = await queue.receive(1, wait_time_s=0, visibility_timeout_s=UNSTARTED_S)
    leases = Leases(
        queue,
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
        for _ in range(checkpoints):
            await anyio.lowlevel.checkpoint()
        assert await leases.hand_back(message, 0, reason="rejected")
        # The heartbeat sleeps again only once the beat's extensions are over.
        await eventually(lambda: clock.sleeps == 2, message="the beat to end")
        tg.cancel_scope.cancel()
    return bool(await queue.receive(1, wait_time_s=0, visibility_timeout_s=UNSTARTED_S))


async def test_an_extension_never_lands_after_the_hand_back_it_raced() -> None:
    """A beat picks the messages due for extension, then extends each in a task of its own. A
    hand-back between the two used to be followed by the extension, which hid the message again
    for the full timeout: a draining worker then saw an empty queue and stopped with the message
    still in it (tests/reliability/test_memory.py, on a slow machine: 238 of 240 in the DLQ).
    Every interleaving is tried: the hand-back before the beat, between its choice and its
    extension, and after the extension."""
    visible = [await hand_back_during_a_beat(turns) for turns in range(16)]
    assert all(visible), [turns for turns, shown in enumerate(visible) if not shown]
