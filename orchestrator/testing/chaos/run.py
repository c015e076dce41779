"""Running a chaos plan: worker processes on one queue, a faulty Connect emulator in its own
process, and workers SIGKILLed or SIGTERMed at seeded points of progress while the queue drains."""

from __future__ import annotations

import functools
import random
import signal
import time
from pathlib import Path

import anyio

from orchestrator.testing.chaos.plan import (
    ChaosPlan,
    emulator_args,
    plan_cancels,
    plan_requests,
    poison_set,
    quotas,
    worker_settings,
)
from orchestrator.testing.chaos.promises import check
from orchestrator.testing.chaos.report import ChaosReport
from orchestrator.testing.queues import drain_bodies, queue_counts, send_all
from orchestrator.testing.requests import cancel_body
from orchestrator.testing.workers import Rig, worker_rig


class _Run:
    """One chaos run in progress: the queues, the processes, the events read so far."""

    def __init__(self, plan: ChaosPlan, rig: Rig) -> None:
        self.plan = plan
        self.rig = rig
        self.sqs, self.queues, self.pool, self.log = rig.sqs, rig.queues, rig.pool, rig.follower
        self.rng = random.Random(plan.seed)
        valid = plan_requests(plan, self.rng)
        poison = [p for copy in range(plan.poison_sets) for p in poison_set(copy, plan.seed)]
        self.report = ChaosReport(plan, valid, poison, cancelled=plan_cancels(plan, valid))
        #: (body, is a valid request) not sent yet, in the seeded order they are sent.
        self.to_send: list[tuple[str, bool]] = []
        self.sent_valid = 0
        self.started = time.monotonic()
        self.valid_ids = [v.request_id for v in valid]
        self.readable = {p.request_id for p in poison if p.request_id is not None}

    async def set_up(self) -> None:
        self.to_send = [(v.body, True) for v in self.report.valid]
        self.to_send += [(p.text, False) for p in self.report.poison]
        self.to_send += [(cancel_body(rid), False) for rid in self.report.cancelled]
        self.rng.shuffle(self.to_send)
        if self.plan.backlog is None:
            await self.send(len(self.to_send))

    async def send(self, count: int) -> int:
        """Send the next `count` messages; how many of them were valid requests."""
        batch, self.to_send = self.to_send[:count], self.to_send[count:]
        await send_all(self.sqs, self.queues.requests, [body for body, _ in batch])
        valid = sum(is_valid for _, is_valid in batch)
        self.sent_valid += valid
        return valid

    async def feed(self) -> None:
        """Keep at most `plan.backlog` valid requests outstanding until everything is sent."""
        backlog = self.plan.backlog or len(self.to_send)
        while self.to_send:
            done = sum(rid in self.log.finals for rid in self.valid_ids)
            room = backlog - (self.sent_valid - done)
            if room > 0:
                await self.send(min(room, 50))
            else:
                await self.log.next_arrival(within_s=0.5)

    def progress(self) -> float:
        done = sum(rid in self.log.finals for rid in self.valid_ids)
        return done / max(1, len(self.valid_ids))

    def reached(self, share: float) -> bool:
        return self.progress() >= share

    async def complete(self) -> bool:
        if self.to_send or self.progress() < 1 or not self.readable <= set(self.log.finals):
            return False
        visible, hidden = await queue_counts(self.sqs, self.queues.dead_letters)
        if visible + hidden < len(self.report.poison):
            return False
        return await queue_counts(self.sqs, self.queues.requests) == (0, 0)

    async def strike(self, action: str) -> None:
        """SIGKILL or SIGTERM a running worker (chosen by the seeded schedule); replace it."""
        at = f"{time.monotonic() - self.started:5.1f} s, {self.progress():4.0%} done"
        which = signal.SIGKILL if action == "kill" else signal.SIGTERM
        victim, replacement = await self.pool.replace(which, self.rng.choice(self.pool.alive))
        if action == "kill":
            self.report.kills += 1
        else:
            self.report.graceful_stops += 1
        self.report.timeline.append(
            f"{at}: {victim.signalled} {victim.name} "
            f"(up {time.monotonic() - victim.started_at:.1f} s), started {replacement.name}"
        )

    async def drain_under_chaos(self) -> None:
        plan = self.plan
        self.started = time.monotonic()
        deadline = self.started + plan.deadline_s
        await self.pool.start(plan.workers)
        actions = ["kill"] * plan.kills + ["term"] * plan.graceful_stops
        self.rng.shuffle(actions)
        marks = sorted(self.rng.uniform(*plan.window) for _ in actions)
        for action, mark in zip(actions, marks, strict=True):
            await self.log.wait_until(functools.partial(self.reached, mark), deadline)
            await self.strike(action)
        while not await self.complete():
            if time.monotonic() > deadline:
                self.report.problems.append(f"did not drain within {plan.deadline_s:g} s")
                break
            await self.log.next_arrival(within_s=0.25)
        else:
            self.report.completed = True
        self.report.drain_s = time.monotonic() - self.started

    async def stop_workers(self) -> None:
        """SIGTERM the survivors; every SIGTERMed worker must exit, and cleanly."""
        for child in await self.pool.stop(self.plan.stop_timeout_s):
            self.report.problems.append(
                f"{child.name} did not exit within {self.plan.stop_timeout_s:g} s"
            )

    async def collect(self) -> None:
        report = self.report
        await self.log.sweep(self.sqs, self.queues.events)
        report.events = self.log.events
        report.contacts = await self.rig.control.contacts()
        report.stats = await self.rig.control.stats()
        report.dead_letters = await drain_bodies(self.sqs, self.queues.dead_letters)
        report.left_in_queue = await queue_counts(self.sqs, self.queues.requests)


async def run_chaos(plan: ChaosPlan, *, sqs_url: str, workdir: Path) -> ChaosReport:
    """Run `plan` against the SQS server at `sqs_url`; the processes' logs go under `workdir`.

    The report's `problems` list every broken promise (see `check`).
    """
    await anyio.Path(workdir).mkdir(parents=True, exist_ok=True)
    async with worker_rig(
        sqs_url, workdir, emulator_args=emulator_args(plan), quotas=quotas(plan),
        settings=worker_settings(plan), prefix="chaos", max_receive_count=plan.max_receive_count,
        readers=2,  # two readers keep up with several workers' events
    ) as rig:  # fmt: skip
        run = _Run(plan, rig)
        await run.set_up()
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.feed)
            await run.drain_under_chaos()
            tg.cancel_scope.cancel()
        await run.stop_workers()
        await run.collect()
    pool = rig.pool
    run.report.workers_started = len(pool.workers)
    run.report.worker_logs = [w.log_path for w in pool.workers]
    run.report.exits = [(w.name, w.signalled, w.exit_code) for w in pool.workers]
    run.report.problems += check(run.report)
    return run.report
