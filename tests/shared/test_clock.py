"""`Bell`, the wake of a sleep: set once, wakes every waiter, and a waiter cancelled (or timed
out) leaves the others waiting. On the real event loop, with real time kept short."""

from __future__ import annotations

import anyio
import pytest

from orchestrator.clock import Bell, SystemClock

pytestmark = pytest.mark.timeout(20)


async def test_a_bell_set_wakes_every_waiter_and_stays_set() -> None:
    bell = Bell()
    woken: list[int] = []

    async def waiter(n: int) -> None:
        await bell.wait()
        woken.append(n)

    async with anyio.create_task_group() as tg:
        for n in range(3):
            tg.start_soon(waiter, n)
        await anyio.wait_all_tasks_blocked()
        assert woken == []
        bell.set()
    assert sorted(woken) == [0, 1, 2]
    assert bell.is_set()
    with anyio.fail_after(1):
        await bell.wait()  # set already: returns at once


async def test_a_cancelled_waiter_leaves_the_others_waiting() -> None:
    bell = Bell()
    woken: list[str] = []
    gone = anyio.CancelScope()

    async def waiter(name: str, scope: anyio.CancelScope) -> None:
        with scope:
            await bell.wait()
            woken.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "stays", anyio.CancelScope())
        tg.start_soon(waiter, "cancelled", gone)
        await anyio.wait_all_tasks_blocked()
        gone.cancel()
        await anyio.wait_all_tasks_blocked()
        bell.set()
    assert woken == ["stays"]


async def test_a_sleep_on_a_bell_ends_when_it_rings_or_when_its_time_is_up() -> None:
    clock = SystemClock()
    rung = Bell()
    with anyio.fail_after(5):  # the ring ends it, not the 30 s
        async with anyio.create_task_group() as tg:
            tg.start_soon(clock.sleep, 30.0, rung)
            await anyio.wait_all_tasks_blocked()
            rung.set()
    silent = Bell()
    with anyio.fail_after(5):
        await clock.sleep(0.01, silent)  # nobody rings: its time is up
    assert not silent.is_set()


async def test_a_sleep_cut_short_by_a_cancel_scope_is_cancelled_like_any_wait() -> None:
    bell = Bell()
    with anyio.move_on_after(0.01) as scope:
        await bell.wait_at_most(30.0)
    assert scope.cancelled_caught
    bell.set()  # nobody waits any more: nothing to wake
    assert bell.is_set()
