"""The visibility heartbeat when the queue service is slow to answer."""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from orchestrator.daemon.leases import Leases
from orchestrator.metrics import Metrics
from orchestrator.sqs import QueueMessage
from orchestrator.testing.memory_queue import MemoryQueue
from orchestrator.testing.waiting import eventually
from tests.support.clock import SteppingClock

TIMEOUT_S = 10


@dataclass
class SlowService:
    """The queue service, where one message's ChangeMessageVisibility hangs until released (a
    call stuck behind a busy server); every other call is answered at once."""

    inner: MemoryQueue
    stuck_body: str
    released: anyio.Event = field(default_factory=anyio.Event)
    extended: list[str] = field(default_factory=list)

    async def receive(
        self, max_messages: int, *, wait_time_s: float, visibility_timeout_s: int
    ) -> list[QueueMessage]:
        return await self.inner.receive(
            max_messages, wait_time_s=wait_time_s, visibility_timeout_s=visibility_timeout_s
        )

    async def delete(self, message: QueueMessage) -> None:
        await self.inner.delete(message)

    async def change_visibility(self, message: QueueMessage, timeout_s: int) -> None:
        if message.body == self.stuck_body:
            await self.released.wait()
        await self.inner.change_visibility(message, timeout_s)
        self.extended.append(message.body)

    async def max_receive_count(self) -> int | None:
        return None


async def test_a_slow_extension_does_not_hold_back_the_messages_that_fall_due_meanwhile() -> None:
    clock = SteppingClock()
    queue = MemoryQueue(clock=clock.monotonic)
    service = SlowService(queue, stuck_body="first")
    leases = Leases(service, visibility_timeout_s=TIMEOUT_S, metrics=Metrics(), clock=clock)
    queue.send("first")
    queue.send("second")
    (first,) = await service.receive(1, wait_time_s=0, visibility_timeout_s=TIMEOUT_S)
    leases.take(first)
    clock.advance(3.0)
    (second,) = await service.receive(1, wait_time_s=0, visibility_timeout_s=TIMEOUT_S)
    leases.take(second)

    async with anyio.create_task_group() as tg:
        tg.start_soon(leases.heartbeat)

        async def second_extended() -> bool:
            # Time moves a little at each look, and the heartbeat beats as it passes: the first
            # message falls due (its extension hangs), then the second one.
            if "second" not in service.extended:
                clock.advance(0.25)
            return "second" in service.extended

        await eventually(second_extended, within=30, message="the second message's extension")
        extended_at = clock.monotonic()
        service.released.set()
        tg.cancel_scope.cancel()

    # The second message was extended before it was due to reappear (3 + 10 s), although the
    # first one's extension was still on its way; so the queue does not hand it out again.
    assert extended_at < 3.0 + TIMEOUT_S
    clock.advance(3.0 + TIMEOUT_S - extended_at + 0.5)
    again = await service.receive(10, wait_time_s=0, visibility_timeout_s=TIMEOUT_S)
    assert [m.body for m in again if m.body == "second"] == []
