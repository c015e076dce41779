"""A queued backlog drained by `orchestrator run` processes (the testing kit's worker pool) against
one emulator while a schedule restarts or scales them: the set-up of the backlog and fleet
scenarios, one mode at a time.

Each mode gets fresh queues on a shared SQS server (a request queue with a dead-letter queue
after `MAX_RECEIVE_COUNT` receives, an events queue), its own emulator (its own account quotas)
and, in fleet mode, its own redis-server. While the workers drain the queue, the queue depths and
the emulator's call counts are sampled; figures come from the emulator's ground truth (contacts'
CreatedAt, 429s), the events queue (final events), the dead-letter queue and the workers' logs.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from orchestrator.connect.operations import Operation
from orchestrator.testing.queues import queue_counts, send_all
from orchestrator.testing.redis import RedisServer
from orchestrator.testing.workers import Rig, WorkerProcess, worker_rig

from . import analysis
from .harness import BENCH_DIR, Quotas, RunContext, pct, request_body, request_id

REPO = BENCH_DIR.parent

MAX_RECEIVE_COUNT = 5
START = Operation.START_WEBRTC_CONTACT


@dataclass(frozen=True)
class Mode:
    name: str
    label: str
    #: ORCHESTRATOR_* settings on top of the scenario's.
    settings: Mapping[str, Any]
    #: Fleet mode: the workers share one budget through a redis-server started for this mode.
    redis: bool = False
    #: A git revision whose `orchestrator/` the workers run instead of this tree's (a baseline
    #: measured side by side with the current code; see `baseline_env`).
    source: str | None = None
    #: The operations whose quota settings that revision knows (None: all of this tree's).
    source_operations: frozenset[str] | None = None


@dataclass
class Drain:
    """One mode's drain in progress: its queues, workers, samples and final events."""

    mode: Mode
    rig: Rig
    sample_every_s: float
    ids: list[str]
    #: The mode's redis-server (fleet mode), which the schedule may kill and start again.
    redis: RedisServer | None = None
    started_at: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    #: [seconds, workers running, visible, in flight, dead-lettered, StartWebRTCContact calls,
    #: their 429s, all Connect calls, their 429s]
    samples: list[list[float]] = field(default_factory=list)
    #: What the schedule did, when (the scenario's entries).
    marks: list[dict[str, Any]] = field(default_factory=list)
    drained_s: float | None = None
    #: What is left once it is over: the emulator's contacts and stats, the dead letters'
    #: receive counts.
    contacts: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    dead: list[int] = field(default_factory=list)
    #: The contacts of the requests sent, their CreatedAt in order, and contacts of no request.
    matched: list[dict[str, Any]] = field(default_factory=list)
    created: list[float] = field(default_factory=list)
    strays: int = 0

    def now(self) -> float:
        return time.monotonic() - self.started_at

    async def sample(self) -> None:
        """Sample the queues and the emulator's counts until cancelled; note when the queue is
        first seen empty twice in a row (and forget it if messages come back)."""
        empty_twice = 0
        while True:
            t = self.now()
            visible, hidden = await queue_counts(self.rig.sqs, self.rig.queues.requests)
            dead = sum(await queue_counts(self.rig.sqs, self.rig.queues.dead_letters))
            ops = analysis.operation_stats(await self.rig.control.stats())
            calls = sum(int(s["calls"]) for s in ops.values())
            throttled = sum(int(s["throttled"]) for s in ops.values())
            start = [int(ops[START]["calls"]), int(ops[START]["throttled"])]
            workers = len(self.rig.pool.alive)
            self.samples.append(
                [round(t, 2), workers, visible, hidden, dead, *start, calls, throttled]
            )
            empty_twice = empty_twice + 1 if (visible, hidden) == (0, 0) else 0
            if empty_twice >= 2 and self.drained_s is None:
                self.drained_s = self.samples[-2][0]
            elif empty_twice == 0:
                self.drained_s = None
            await anyio.sleep(self.sample_every_s)

    async def until(self, at_s: float) -> bool:
        """Wait until `at_s` seconds since the start, or the queue drained: whether it drained."""
        while self.drained_s is None and self.now() < at_s:
            await self.rig.follower.next_arrival(within_s=min(0.5, max(0.01, at_s - self.now())))
        return self.drained_s is not None

    async def dead_letter_receive_counts(self) -> list[int]:
        """Each dead-lettered message's receive count (the queue is emptied)."""
        counts: list[int] = []
        sqs, dlq = self.rig.sqs, self.rig.queues.dead_letters
        while True:
            got = await sqs.receive_message(
                QueueUrl=dlq, MaxNumberOfMessages=10, AttributeNames=["ApproximateReceiveCount"]
            )
            if not (messages := got.get("Messages", [])):
                return counts
            for message in messages:
                counts.append(int(message.get("Attributes", {}).get("ApproximateReceiveCount", 0)))
            await sqs.delete_message_batch(QueueUrl=dlq, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ])  # fmt: skip


@contextlib.contextmanager
def _redis(mode: Mode, logs: Path) -> Iterator[RedisServer | None]:
    if not mode.redis:
        yield None
        return
    with RedisServer(logs / f"{mode.name}-redis") as server:
        yield server


def baseline_env(revision: str, into: Path, *, bench: bool = False) -> dict[str, str]:
    """The environment that makes `python -m orchestrator` run `orchestrator/` as it was at
    `revision` (extracted by `git archive` into `into`), with this tree's installed
    dependencies: the package first on PYTHONPATH, and no current directory on sys.path.
    `bench`: this tree's `bench` package importable too (a measuring child on the old code)."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "orchestrator"],
        cwd=REPO, capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    path = os.pathsep.join([str(into), str(REPO)] if bench else [str(into)])
    env = {"PYTHONPATH": path, "PYTHONSAFEPATH": "1"}
    found = subprocess.run(
        [sys.executable, "-c", "import orchestrator; print(orchestrator.__file__)"],
        env={**os.environ, **env}, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    if not found.startswith(str(into)):
        raise RuntimeError(f"the baseline's workers would import {found}, not {into}")
    return env


async def drain(
    mode: Mode, *, ctx: RunContext, run: str, sqs_url: str, requests: int, quotas: Quotas,
    emulator_args: Sequence[str], settings: Mapping[str, Any],
    drive: Callable[[Drain], Awaitable[None]], stop_timeout_s: float, sample_every_s: float,
) -> Drain:  # fmt: skip
    """Queue `requests`, `drive` the mode's workers until the queue drained, SIGTERM the rest,
    wait `stop_timeout_s` for every exit and for the events follower to read every final event
    (until none arrives for a while). Request ids are `request_id(run, i)`."""
    args = [*emulator_args, "--seed", str(ctx.seed)]
    env = {} if mode.source is None else baseline_env(mode.source, ctx.logs / f"{mode.name}-src")
    with _redis(mode, ctx.logs) as redis:
        own = {**settings, **mode.settings}
        if redis is not None:
            own["FLEET__REDIS_URL"] = redis.url
        async with worker_rig(
            sqs_url, ctx.logs / mode.name, emulator_args=args, quotas=quotas, settings=own,
            prefix=mode.name, max_receive_count=MAX_RECEIVE_COUNT, env=env,
            worker_operations=mode.source_operations,
        ) as rig:  # fmt: skip
            ids = [request_id(run, i) for i in range(requests)]
            await send_all(
                rig.sqs, rig.queues.requests, [request_body(run, i) for i in range(requests)]
            )
            d = Drain(mode, rig, sample_every_s, ids, redis)
            async with anyio.create_task_group() as tg:
                tg.start_soon(d.sample)
                await drive(d)
                tg.cancel_scope.cancel()
            await rig.pool.stop(stop_timeout_s)
            # The finals were all sent once the queue drained, but the follower may still be
            # reading them (moto hands them out slowly on a loaded machine): the figures count
            # what the workers emitted, not how far the reader got.
            await rig.all_final(ids)
            d.contacts = await rig.control.contacts()
            d.stats = await rig.control.stats()
            d.dead = await d.dead_letter_receive_counts()
    matched, d.strays = analysis.match_requests(d.contacts, d.ids)
    d.matched = list(matched.values())
    d.created = sorted(float(c["CreatedAt"]) for c in d.matched)
    return d


def figures(d: Drain, start_quota: tuple[float, float]) -> dict[str, Any]:
    """What every mode reports: starts against the quota, 429s, losses, the timeline."""
    rate, burst = start_quota
    contacts, dead, created = d.contacts, d.dead, d.created
    spread = created[-1] - created[0] if len(created) > 1 else math.nan
    ops = analysis.operation_stats(d.stats)
    calls = sum(s["calls"] for s in ops.values())
    throttled = sum(s["throttled"] for s in ops.values())
    per_token = Counter(c.get("ClientToken") for c in contacts)
    finals = d.rig.follower.finals
    return {
        "label": d.mode.label,
        "requests": len(d.ids),
        "contacts": len(contacts),
        "requests_with_a_contact": len(d.matched),
        "duplicate_contacts": sum(n - 1 for n in per_token.values()) + d.strays,
        "quota_efficiency": analysis.quota_efficiency(len(created), spread, rate, burst),
        "achieved_start_rate": (len(created) - 1) / spread if spread > 0 else math.nan,
        "start_window_s": spread,
        "start_calls": ops[START]["calls"],
        "start_throttled": ops[START]["throttled"],
        "start_throttled_share": ops[START]["throttled_fraction"],
        "connect_calls": calls,
        "connect_throttled": throttled,
        "connect_throttled_share": throttled / calls if calls else math.nan,
        "operations": ops,
        "dead_letters": len(dead),
        "dead_letter_receive_counts": sorted(dead),
        "requests_without_final_event": sum(1 for r in d.ids if r not in finals),
        "requests_with_two_final_types": sum(1 for r in d.ids if len(finals.get(r, ())) > 1),
        "finals": dict(Counter(t for types in finals.values() for t in types)),
        "drain_s": d.drained_s,
        "timeline": {
            "samples": d.samples,
            "starts_s": [round(t - d.started_wall, 2) for t in created],
        },
    }


def errors_logged(workers: Sequence[WorkerProcess]) -> int:
    """Error-level lines in the workers' JSON logs."""
    return sum(1 for w in workers for r in w.records() if r.get("level") == "error")


def drained(value: Any) -> str:
    """A drain time: "42 s", or "did not drain"."""
    return "did not drain" if value is None else f"{value:.0f} s"


def share(value: Any, digits: int = 0) -> str:
    """A share as a percentage: 87%."""
    return pct(value, digits, "")
