"""The generic batcher behind SQS acks and the event sinks: batches, flushes in flight, shutdown."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from orchestrator.batcher import Batcher


class SlowFlush:
    """Flushes that wait for the test to release them, recording how many run at once."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.running = 0
        self.peak = 0
        self.release = anyio.Event()
        self.fail_on = fail_on
        self._started = anyio.Event()

    async def running_at_least(self, count: int) -> None:
        with anyio.fail_after(5):
            while self.running < count:
                await self._started.wait()
                self._started = anyio.Event()

    async def __call__(self, items: list[str]) -> Sequence[BaseException | None]:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self._started.set()
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        self.batches.append(items)
        return [ValueError(item) if item == self.fail_on else None for item in items]


async def test_several_batches_are_flushed_at_once_and_no_more_than_allowed() -> None:
    flush = SlowFlush()
    done: list[str] = []

    async def submit(batcher: Batcher[str], item: str) -> None:
        await batcher.submit(item)
        done.append(item)

    async with (
        Batcher(flush, max_batch=3, max_in_flight=2) as batcher,
        anyio.create_task_group() as tg,
    ):
        for i in range(12):
            tg.start_soon(submit, batcher, f"i{i}")
        await flush.running_at_least(2)  # two batches out, the rest waiting for a slot
        flush.release.set()
    assert sorted(done) == sorted(f"i{i}" for i in range(12))
    assert flush.peak == 2
    assert all(len(batch) <= 3 for batch in flush.batches)
    assert sorted(item for batch in flush.batches for item in batch) == sorted(done)


async def test_each_item_gets_its_own_outcome() -> None:
    flush = SlowFlush(fail_on="bad")
    flush.release.set()
    outcomes: dict[str, str] = {}

    async def submit(batcher: Batcher[str], item: str) -> None:
        try:
            await batcher.submit(item)
        except ValueError:
            outcomes[item] = "failed"
        else:
            outcomes[item] = "ok"

    async with Batcher(flush, max_batch=10) as batcher, anyio.create_task_group() as tg:
        for item in ("good", "bad", "fine"):
            tg.start_soon(submit, batcher, item)
    assert outcomes == {"good": "ok", "bad": "failed", "fine": "ok"}


async def test_a_failed_call_fails_its_batch_and_the_batcher_carries_on() -> None:
    calls = 0

    async def flaky(items: list[str]) -> Sequence[BaseException | None]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("the service is away")
        return [None] * len(items)

    async with Batcher(flaky) as batcher:
        with pytest.raises(ConnectionError):
            await batcher.submit("first")
        await batcher.submit("second")  # no exception: the flusher survived
    assert calls == 2


async def test_leaving_the_block_waits_for_batches_already_out() -> None:
    flush = SlowFlush()
    done: list[str] = []

    async def submit(batcher: Batcher[str], item: str) -> None:
        await batcher.submit(item)
        done.append(item)

    async with anyio.create_task_group() as tg:
        async with Batcher(flush, max_batch=2, max_in_flight=1) as batcher:
            for i in range(4):
                tg.start_soon(submit, batcher, f"i{i}")
            await flush.running_at_least(1)
            flush.release.set()
        # The block is left: everything handed over was delivered.
        assert len(flush.batches) == 2
    assert sorted(done) == ["i0", "i1", "i2", "i3"]


async def test_outside_a_block_each_item_is_flushed_alone() -> None:
    flush = SlowFlush()
    flush.release.set()
    batcher: Batcher[str] = Batcher(flush)
    await batcher.submit("one")
    await batcher.submit("two")
    assert flush.batches == [["one"], ["two"]]
