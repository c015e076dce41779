"""The budget fill against the emulator: with polling only, the watches of an engine spend the
DescribeContact share they are given, and never more than the budget.

Time is a SteppingClock shared by the emulator (its quotas included), the engine and its rate
budget: the test moves it a tenth of a second at a time, each time once every watch sleeps again,
so no test waits in real time and the figures do not depend on the machine's load.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from orchestrator.connect.operations import DEFAULT_QUOTAS, Operation, Quota
from orchestrator.connect.ratelimit import RateBudget
from orchestrator.engine.watch import WatchPolicy
from orchestrator.sinks import MemorySink
from orchestrator.testing.emulator import Emulator, EmulatorControl
from tests.conftest import emulator_config
from tests.support.clock import SteppingClock, VirtualClock
from tests.support.engine import call_request, make_engine, settle
from tests.support.peers import ClientFactory, VirtualEmulatorFactory

RATE = 10.0
#: DescribeContact at Connect's default; the other operations out of the way.
QUOTAS = {
    **DEFAULT_QUOTAS,
    Operation.START_WEBRTC_CONTACT: Quota(1000.0, 1000.0),
    Operation.DESCRIBE_CONTACT: Quota(RATE, 15.0),
    Operation.START_SCREEN_SHARING: Quota(1000.0, 1000.0),
}
WATCHED = 20
STEP_S = 0.1
#: Calls are counted from here (the backoff has grown by then) ...
FROM_S = 20.0
#: ... to here; the watches time out a little later.
UNTIL_S = 60.0


async def describe_calls_per_s(
    client_for: ClientFactory, **watch: Any
) -> tuple[float, Mapping[str, Any]]:
    """`WATCHED` contacts that never get an agent, watched by one engine with the `watch`
    policy on a DescribeContact budget of RATE: the calls per second the emulator answered
    from FROM_S to UNTIL_S, and its DescribeContact counts of the whole run."""
    clock = SteppingClock()
    config = emulator_config(agent_delay_s=(1e4, 1e4), quotas=QUOTAS, max_concurrent_calls=None)
    budget = RateBudget(QUOTAS, clock=clock)
    describe = budget[Operation.DESCRIBE_CONTACT]
    # Left at their deadline: what is measured is the polling, not the stop that follows.
    policy = WatchPolicy(
        max_wait_s=UNTIL_S + 5, describe_rate=describe.target_rate, on_timeout="leave", **watch
    )
    emulator = Emulator(config, clock=clock.time)
    async with emulator:
        engine = make_engine(
            await client_for(emulator), MemorySink(), clock=clock, watch=policy, budget=budget
        )
        control = EmulatorControl(emulator.url)

        def quiet() -> bool:
            """Every watch sleeps, and none is due to wake: in its pause, or waiting for a token
            (the first in line sleeps until the token is due, the others wait for it)."""
            waiting = clock.sleeping + max(0, describe.waiting - 1)
            return clock.due == 0 and waiting == len(engine.notifier)

        async def calls() -> int:
            return int((await control.op_stats("DescribeContact"))["calls"])

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(WATCHED):
                    tg.start_soon(engine.run, call_request(f"fill-{i}"))
                await settle(lambda: len(engine.notifier) == WATCHED and quiet())
                counted: list[int] = []
                for step in range(round((UNTIL_S + 10) / STEP_S)):
                    clock.advance(STEP_S)
                    await settle(quiet)
                    if step + 1 in (round(FROM_S / STEP_S), round(UNTIL_S / STEP_S)):
                        counted.append(await calls())
        assert len(engine.notifier) == 0  # every watch timed out
        return (counted[1] - counted[0]) / (UNTIL_S - FROM_S), await control.op_stats(
            "DescribeContact"
        )


@pytest.mark.parametrize("queue_aware", [False, True], ids=["backoff", "queue-aware"])
async def test_waiting_contacts_spend_the_budget_share_and_never_more(
    client_for: ClientFactory, queue_aware: bool
) -> None:
    filled, counts = await describe_calls_per_s(
        client_for, queue_aware=queue_aware, fill_budget_share=0.9
    )
    backoff, _ = await describe_calls_per_s(
        client_for, queue_aware=queue_aware, fill_budget_share=0
    )

    # 20 contacts at the 10 s backoff ceiling poll about 2.3 times a second (2 heads every
    # second add 2): most of the budget idle. Filled, they spend about 90 % of it (the pauses
    # end on the test's tenth-of-a-second steps, a little late), and never more.
    assert backoff < 0.5 * RATE
    assert 0.8 * RATE <= filled <= RATE
    assert counts["throttled"] == 0


async def test_a_contact_among_few_polls_as_often_as_their_share_of_the_budget_allows(
    start_virtual_emulator: VirtualEmulatorFactory,
    client_for: ClientFactory,
    vclock: VirtualClock,
) -> None:
    emulator = await start_virtual_emulator(agent_delay_s=(20.0, 20.0), flow_delay_s=0.0)
    # 10 polls/s of which the schedule may fill 90 %: 30 watched contacts, every 30 / 9 s.
    policy = WatchPolicy(
        queue_aware=False,
        first_delay_s=2,
        multiplier=2,
        max_interval_s=30,
        jitter=0,
        describe_rate=10,
        fill_budget_share=0.9,
    )
    engine = make_engine(await client_for(emulator), MemorySink(), clock=vclock, watch=policy)
    with contextlib.ExitStack() as others:
        for i in range(29):  # contacts other watches of this engine wait for
            others.enter_context(engine.notifier.subscribe(f"other-{i}"))
        await engine.run(call_request("one-of-30"))

    # Alone among 30 on backoff only: 2, 4, 8, 16 s, noticed 10 s late. Filled: 2 s, then
    # every 3.3 s, noticed within 3.3 s.
    assert vclock.slept == pytest.approx([2, *[10 / 3] * 6])
