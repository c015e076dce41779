"""`orchestrator run` worker processes for process tests, the chaos soak and the benchmarks: a pool
that starts them with one environment, keeps each one's JSON log, signals and replaces them, and
waits for their exits with a deadline.

```python
async with worker_rig(sqs.url, tmp_path, emulator_args=["--seed", "7"], quotas=QUOTAS,
                      settings=BRISK) as rig:          # queues, the emulator, the pool
    await send_all(rig.sqs, rig.queues.requests, bodies)
    await rig.pool.start(3)
    await rig.pool.replace(SIGKILL)                     # the oldest running worker, and a new one
    ...
    assert await rig.pool.stop(timeout_s=20) == []      # SIGTERM the rest; every worker exited
```

`worker_pool` and `worker_env` are the parts, for a run that brings its own peers.

Every worker still running when the pool closes is SIGKILLed (also on cancellation).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from signal import SIGTERM, Signals
from typing import IO, TYPE_CHECKING, Any

import anyio
from aiobotocore.session import get_session
from anyio.abc import Process, TaskGroup

from orchestrator.connect.operations import Operation
from orchestrator.testing.emulator import EmulatorControl
from orchestrator.testing.processes import ServerProcess, child_env, emulator_process, quota_args
from orchestrator.testing.queues import EventFollower, create_queue, create_queue_with_dlq
from orchestrator.testing.requests import REGION
from orchestrator.testing.worker_logs import log_records

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

__all__ = [
    "BRISK",
    "Rig",
    "WorkQueues",
    "WorkerPool",
    "WorkerProcess",
    "quota_settings",
    "work_queues",
    "worker_env",
    "worker_pool",
    "worker_rig",
]

#: What a worker runs.
RUN = (sys.executable, "-m", "orchestrator", "run")
#: The log event after which a worker receives (and handles signals): its queue's redrive policy.
RECEIVING = '"queue.redrive_policy"'


@dataclass(frozen=True)
class WorkQueues:
    """What a fleet of workers shares: a request queue, its dead-letter queue, and the queue
    their SQS sink writes lifecycle events to."""

    requests: str
    dead_letters: str
    events: str


async def work_queues(
    sqs: SQSClient, *, prefix: str = "work", max_receive_count: int = 5
) -> WorkQueues:
    """Fresh queues: requests go to the dead-letter queue after `max_receive_count` receives."""
    requests, dead_letters = await create_queue_with_dlq(
        sqs, max_receive_count=max_receive_count, prefix=prefix
    )
    return WorkQueues(requests, dead_letters, await create_queue(sqs, f"{prefix}-ev"))


#: What makes a worker process brisk in a test: short long polls and retry delays, polls every
#: few tenths of a second.
BRISK: Mapping[str, float] = {
    "QUEUE__WAIT_TIME_S": 1,
    "QUEUE__RETRY_BASE_DELAY_S": 1,
    "QUEUE__RETRY_MAX_DELAY_S": 2,
    "WATCH__FIRST_DELAY_S": 0.2,
    "WATCH__MAX_INTERVAL_S": 0.5,
    "WATCH__HEAD_INTERVAL_S": 0.3,
}


def quota_settings(quotas: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """The `[connect]` quota settings (`START_WEBRTC_CONTACT_RATE`...) of {operation: (rate,
    burst)}."""
    out: dict[str, float] = {}
    for operation, (rate, burst) in quotas.items():
        name = Operation(operation).name
        out[f"CONNECT__{name}_RATE"] = rate
        out[f"CONNECT__{name}_BURST"] = burst
    return out


def worker_env(
    *,
    sqs_url: str,
    queue_url: str,
    connect_url: str,
    events_url: str | None = None,
    quotas: Mapping[str, tuple[float, float]] | None = None,
    settings: Mapping[str, Any] | None = None,
    operations: Collection[str] | None = None,
) -> dict[str, str]:
    """The environment of a worker on the local SQS server and emulator: this process's, without
    its `ORCHESTRATOR_*` variables, plus `ORCHESTRATOR_<KEY>` for each setting (JSON logs at INFO,
    no metrics server, the quotas (of `operations` only, when given), then `settings`, which
    win)."""
    values: dict[str, Any] = {
        "AWS__REGION": REGION,
        "AWS__ENDPOINT_URL": sqs_url,
        "QUEUE__URL": queue_url,
        "CONNECT__ENDPOINT_URL": connect_url,
        "OBSERVABILITY__ENABLED": "false",
        "LOGGING__LEVEL": "INFO",
        **quota_settings(
            {
                operation: quota
                for operation, quota in (quotas or {}).items()
                if operations is None or operation in operations
            }
        ),
    }
    if events_url is not None:
        values["EVENTS__SQS_QUEUE_URL"] = events_url
    values.update(settings or {})
    return child_env({f"ORCHESTRATOR_{key}": str(value) for key, value in values.items()})


@dataclass(eq=False)
class WorkerProcess:
    """One worker: its process, its log (stdout and stderr), what was done to it and how it
    ended."""

    name: str
    log_path: Path
    process: Process
    log_file: IO[bytes]
    #: When it was started: monotonic, and wall-clock (to compare with its log's timestamps).
    started_at: float
    started_wall: float
    #: The name of the last signal sent (None: never signalled), and when (monotonic).
    signalled: str | None = None
    signalled_at: float | None = None
    exit_code: int | None = None
    exited_at: float | None = None
    exited: anyio.Event = field(default_factory=anyio.Event)

    def signal(self, which: Signals) -> None:
        self.signalled, self.signalled_at = which.name, time.monotonic()
        if self.exit_code is None:
            self.process.send_signal(which)

    async def wait(self, timeout_s: float) -> int:
        """Its exit code; TimeoutError if it is still running after `timeout_s`."""
        with anyio.fail_after(timeout_s):
            await self.exited.wait()
        if self.exit_code is None:  # set before `exited`
            raise RuntimeError(f"{self.name} exited without a status")
        return self.exit_code

    @property
    def stop_s(self) -> float | None:
        """Seconds from its last signal to its exit (None: not both happened)."""
        if self.signalled_at is None or self.exited_at is None:
            return None
        return self.exited_at - self.signalled_at

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """Its JSON log records so far."""
        return log_records(self.log_path)

    def receiving(self) -> bool:
        """Whether it has started receiving (before that, a signal just kills it)."""
        return RECEIVING in self.log_text()


class WorkerPool:
    """Worker processes sharing one environment, logs under `logs` (`<prefix><n>.log`)."""

    def __init__(
        self,
        env: Mapping[str, str],
        logs: Path,
        task_group: TaskGroup,
        *,
        prefix: str = "w",
        argv: Sequence[str] = RUN,
    ) -> None:
        self.env = dict(env)
        self.logs = logs
        self.prefix = prefix
        self.argv = list(argv)
        self._tg = task_group
        #: Every worker started, oldest first.
        self.workers: list[WorkerProcess] = []
        #: Those running and never signalled, oldest first.
        self.alive: list[WorkerProcess] = []

    async def start(self, count: int = 1) -> list[WorkerProcess]:
        started = []
        for _ in range(count):
            name = f"{self.prefix}{len(self.workers)}"
            log_path = self.logs / f"{name}.log"
            log_file = log_path.open("wb")
            process = await anyio.open_process(
                self.argv, env=self.env, stdin=None, stdout=log_file, stderr=log_file
            )
            worker = WorkerProcess(name, log_path, process, log_file, time.monotonic(), time.time())
            self._tg.start_soon(self._reap, worker)
            self.workers.append(worker)
            self.alive.append(worker)
            started.append(worker)
        return started

    async def _reap(self, worker: WorkerProcess) -> None:
        worker.exit_code = await worker.process.wait()
        worker.exited_at = time.monotonic()
        worker.exited.set()

    def signal(self, worker: WorkerProcess, which: Signals) -> None:
        if worker in self.alive:
            self.alive.remove(worker)
        worker.signal(which)

    async def replace(
        self, which: Signals, worker: WorkerProcess | None = None
    ) -> tuple[WorkerProcess, WorkerProcess]:
        """Signal `worker` (the oldest running one by default) and start another at once:
        (the one signalled, its replacement)."""
        victim = worker or self.alive[0]
        self.signal(victim, which)
        (replacement,) = await self.start()
        return victim, replacement

    async def scale_to(self, count: int) -> None:
        """Start workers up to `count` running, or SIGTERM the oldest beyond it (a scale-down)."""
        if len(self.alive) < count:
            await self.start(count - len(self.alive))
        while len(self.alive) > count:
            self.signal(self.alive[0], SIGTERM)

    async def stop(self, timeout_s: float) -> list[WorkerProcess]:
        """SIGTERM every running worker, then wait up to `timeout_s` for every signalled worker
        to exit: those still running then."""
        for worker in list(self.alive):
            self.signal(worker, SIGTERM)
        with anyio.move_on_after(timeout_s):
            for worker in self.workers:
                if worker.signalled is not None:
                    await worker.exited.wait()
        return [w for w in self.workers if w.signalled is not None and not w.exited.is_set()]

    async def close(self) -> None:
        """SIGKILL whatever still runs (not recorded as a signal sent), then release it all."""
        with anyio.CancelScope(shield=True):
            for worker in self.workers:
                if not worker.exited.is_set():
                    worker.process.kill()
            for worker in self.workers:
                with anyio.move_on_after(10):
                    await worker.exited.wait()
                await worker.process.aclose()
                worker.log_file.close()
            self.alive = []


@contextlib.asynccontextmanager
async def worker_pool(
    env: Mapping[str, str], logs: Path, *, prefix: str = "w", argv: Sequence[str] = RUN
) -> AsyncIterator[WorkerPool]:
    """A `WorkerPool` whose workers are all gone when the block ends."""
    await anyio.Path(logs).mkdir(parents=True, exist_ok=True)
    async with anyio.create_task_group() as tg:
        pool = WorkerPool(env, logs, tg, prefix=prefix, argv=argv)
        try:
            yield pool
        finally:
            await pool.close()


@dataclass
class Rig:
    """Worker processes on fresh queues of an SQS server and a Connect emulator of their own,
    their lifecycle events followed as they come."""

    sqs: SQSClient
    queues: WorkQueues
    emulator: ServerProcess
    control: EmulatorControl
    pool: WorkerPool
    follower: EventFollower

    async def all_final(
        self, request_ids: Iterable[str], *, stall_s: float = 30.0, within_s: float = 180.0
    ) -> bool:
        """Wait until every one of `request_ids` has a final event: whether it came to that
        within `within_s`, and before `stall_s` passed without any event arriving (moto hands
        out a thousand queued events at about 30 a second, slower on a loaded machine)."""
        wanted, end = set(request_ids), time.monotonic() + within_s
        seen = -1
        while len(self.follower.events) > seen and time.monotonic() < end:
            seen = len(self.follower.events)
            deadline = min(end, time.monotonic() + stall_s)
            if await self.follower.wait_until(
                lambda: set(self.follower.finals) >= wanted, deadline
            ):
                return True
        return False


@contextlib.asynccontextmanager
async def worker_rig(
    sqs_url: str,
    workdir: Path,
    *,
    emulator_args: Sequence[str],
    quotas: Mapping[str, tuple[float, float]],
    settings: Mapping[str, Any],
    prefix: str = "work",
    max_receive_count: int = 5,
    readers: int = 1,
    env: Mapping[str, str] | None = None,
    worker_operations: Collection[str] | None = None,
) -> AsyncIterator[Rig]:
    """The emulator (`emulator_args`, `quotas`) and worker processes (`settings`, `quotas`, and
    `env` added to their environment) of one run, logs under `workdir`. With
    `worker_operations`, the workers are told the quotas of those operations only (an older
    revision's workers refuse settings they do not know). When the block ends, the events
    still queued are read and every worker is gone (SIGKILLed if it still ran)."""
    emulator_argv = [*emulator_args, *quota_args(quotas)]
    async with (
        get_session().create_client("sqs", region_name=REGION, endpoint_url=sqs_url) as sqs,
        emulator_process(emulator_argv, workdir / "emulator.log") as emulator,
    ):
        queues = await work_queues(sqs, prefix=prefix, max_receive_count=max_receive_count)
        environment = worker_env(
            sqs_url=sqs_url,
            queue_url=queues.requests,
            connect_url=emulator.url,
            events_url=queues.events,
            quotas=quotas,
            operations=worker_operations,
            settings=settings,
        ) | dict(env or {})
        control = EmulatorControl(emulator.url, timeout_s=120)
        follower = EventFollower()
        async with (
            worker_pool(environment, workdir, prefix=f"{prefix}-w") as pool,
            anyio.create_task_group() as tg,
        ):
            for _ in range(readers):  # one per few workers keeps up with their events
                tg.start_soon(follower.follow, sqs, queues.events)
            yield Rig(sqs, queues, emulator, control, pool, follower)
            tg.cancel_scope.cancel()
        await follower.sweep(sqs, queues.events)
