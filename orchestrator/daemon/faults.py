"""Deployment-fault mode: a fault of the deployment (access denied, an endpoint that is not
Connect, the configured default instance or flow unknown, a sink that stays down, Connect not
answering) ends no request. The work is retried in place with a growing pause, `/readyz` fails
with the reason, and while any fault lasts the worker receives nothing new (`active`,
`cleared`).

Connect unreachable (no answer, or 5xx, past a call's retry budget) is held where it happens:
the gateway's call waits here and tries again (`hold`, the `OutageHold` of
`connect/outage.py`), so a started contact stays watched and its message stays held. The
outage is logged as one `connect.unreachable` line when it begins, a summary line every
`summary_interval_s` while it lasts (calls waiting, retries since the last line) and
`connect.reachable` when Connect answers again; each call's retries are debug lines meanwhile.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import structlog

from orchestrator.bounds import Bounded, declared
from orchestrator.clock import Clock
from orchestrator.daemon.readiness import ReadinessBoard
from orchestrator.errors import ConnectError, DeploymentFault, SinkError
from orchestrator.metrics import Metrics
from orchestrator.retry import backoff_s

log = structlog.get_logger("orchestrator.daemon.worker")

T = TypeVar("T")

#: The readiness board's part deployment faults report under.
DEPLOYMENT_PART = "deployment"
#: The fault reason of calls held while Connect does not answer.
CONNECT_UNREACHABLE = "connect_unreachable"


@dataclass(frozen=True)
class OutagePolicy(Bounded):
    """How calls wait while Connect does not answer (`[connect]` outage_*)."""

    hold: bool = declared(
        True,
        "Hold Connect calls in place while Connect does not answer. false: such a call fails "
        "after its retry budget like any transient error (the message goes back, and its last "
        "receive ends the request with request.failed), the behaviour before outages were "
        "held; kept for comparison (bench outage).",
    )

    max_backoff_s: float = declared(
        30.0,
        "While Connect does not answer (connection errors or 5xx past a call's retry "
        "budget), each held call tries again after a pause that doubles from 1 s up to this "
        "many seconds. No request is ended for an outage.",
        gt=0,
    )
    summary_interval_s: float = declared(
        30.0,
        "While Connect does not answer, one connect.unreachable line this often (calls "
        "waiting, retries since the last line) instead of a warning per retry.",
        gt=0,
    )


@dataclass(eq=False)
class _Outage:
    """What the summary lines of one outage report."""

    began: float
    last_line: float
    retries: int = 0
    error: str = ""
    #: Probes so far (the pause grows with them), whether one is under way, and Connect's
    #: first answer (every held call then tries again).
    probes: int = 0
    probing: bool = False
    answered: anyio.Event = field(default_factory=anyio.Event)


class StoppedDuringFault(Exception):
    """The worker stopped while work waited out a deployment fault: the work was not done."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(kw_only=True, eq=False)
class DeploymentFaults:
    """The deployment faults in progress, by reason, and the retry-in-place loop."""

    readiness: ReadinessBoard
    metrics: Metrics
    clock: Clock
    #: The pause after the first failed retry, and the longest (doubling in between).
    backoff_bounds_s: tuple[float, float]
    #: The worker's stop (the worker sets it): a fault waited out when it is set ends the wait.
    stop: anyio.Event = field(default_factory=anyio.Event)
    outage: OutagePolicy = field(default_factory=OutagePolicy)
    #: Reason -> how many pieces of work are waiting it out.
    _faults: dict[str, int] = field(default_factory=dict, init=False)
    #: Set while no fault lasts (replaced when one begins).
    cleared: anyio.Event = field(default_factory=anyio.Event, init=False)
    #: The Connect outage in progress, if any.
    _unreachable: _Outage | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.cleared.set()

    @property
    def active(self) -> bool:
        return bool(self._faults)

    @property
    def reasons(self) -> list[str]:
        return sorted(self._faults)

    async def retry_in_place(self, work: Callable[[int], Awaitable[T]]) -> T:
        """`work(retries)` until it ends without a deployment fault (`DeploymentFault`, or a
        `SinkError`: the sinks stay down). Raises `StoppedDuringFault` when the worker stops
        while a fault lasts."""
        fault: str | None = None
        retries = 0
        try:
            while True:
                try:
                    result = await work(retries)
                except (DeploymentFault, SinkError) as exc:
                    error = (
                        exc if isinstance(exc, DeploymentFault) else DeploymentFault("sink", exc)
                    )
                    if fault is None:
                        fault = error.reason
                        self._enter(fault)
                    retries += 1
                    await self._wait_out(error, retries)
                    continue
                self._works()
                return result
        finally:
            if fault is not None:
                self._leave(fault)

    def _enter(self, reason: str) -> None:
        if not self._faults:
            self.cleared = anyio.Event()
        self._faults[reason] = self._faults.get(reason, 0) + 1

    def _leave(self, reason: str) -> None:
        self._faults[reason] -= 1
        if not self._faults[reason]:
            del self._faults[reason]
        if not self._faults:
            self.cleared.set()

    async def _wait_out(self, fault: DeploymentFault, retries: int) -> None:
        """Report the fault and pause before retrying in place."""
        self.metrics.deployment_faults.labels(fault.reason).inc()
        self.readiness.fail(DEPLOYMENT_PART, f"{fault.reason}: {fault.cause}")
        first_s, max_s = self.backoff_bounds_s
        delay = backoff_s(retries, first_s=first_s, max_s=max_s)
        log.error(
            "worker.deployment_fault",
            reason=fault.reason,
            error=str(fault.cause),
            retry_in_s=round(delay, 2),
            detail="no request is ended for this; new messages wait in the queue",
        )
        await self.clock.sleep(delay, self.stop)
        if self.stop.is_set():
            raise StoppedDuringFault(fault.reason)

    def _works(self) -> None:
        report = self.readiness.snapshot().get(DEPLOYMENT_PART)
        if report is not None and not report.ok:
            log.info("worker.deployment_fault_cleared")
            self.readiness.ok(DEPLOYMENT_PART)

    # -- Connect unreachable (the gateway's `OutageHold`) ---------------------------------------

    @property
    def declared(self) -> bool:
        """Whether calls are held because Connect does not answer."""
        return self._unreachable is not None

    @property
    def held(self) -> int:
        """Calls waiting for Connect to answer."""
        return self._faults.get(CONNECT_UNREACHABLE, 0)

    async def hold(self, error: ConnectError, held: int) -> None:
        """Pause a call Connect did not answer before it tries again (`held`: its holds so
        far, the first one declares the outage for it). One held call at a time probes, after
        a pause that grows with the outage's probes; the others wait until Connect answers
        (then all try again), so an outage costs a call per pause, not one per watch."""
        now = self.clock.monotonic()
        if held == 1:
            self._enter(CONNECT_UNREACHABLE)
        outage = self._unreachable
        if outage is None:
            outage = self._unreachable = _Outage(began=now, last_line=now)
            log.error(
                "connect.unreachable",
                operation=error.operation,
                error=error.code,
                detail="calls wait and retry in place; no request is ended for this and new "
                "messages wait in the queue",
            )
        outage.retries += 1
        outage.error = f"{error.operation}: {error.code}"
        self.metrics.deployment_faults.labels(CONNECT_UNREACHABLE).inc()
        self.readiness.fail(DEPLOYMENT_PART, f"{CONNECT_UNREACHABLE}: {outage.error}")
        if now - outage.last_line >= self.outage.summary_interval_s:
            log.error(
                "connect.unreachable",
                waiting_calls=self.held,
                retries=outage.retries,
                for_s=round(now - outage.began, 1),
                last_error=outage.error,
            )
            outage.last_line, outage.retries = now, 0
        while not outage.answered.is_set():
            if not outage.probing:
                outage.probing = True
                outage.probes += 1
                first_s, _ = self.backoff_bounds_s
                pause = backoff_s(
                    outage.probes, first_s=first_s, max_s=self.outage.max_backoff_s, jitter=(0.5, 1)
                )
                try:
                    await self.clock.sleep(pause, outage.answered)
                finally:
                    outage.probing = False
                return
            # Another call probes; look again at the longest pause (it may have gone away).
            await self.clock.sleep(self.outage.max_backoff_s, outage.answered)

    def release(self, *, answered: bool) -> None:
        """A held call is over; one Connect answered ends the outage."""
        self._leave(CONNECT_UNREACHABLE)
        outage = self._unreachable
        if answered and outage is not None:
            self._unreachable = None
            outage.answered.set()
            log.info(
                "connect.reachable",
                unreachable_for_s=round(self.clock.monotonic() - outage.began, 1),
                still_waiting_calls=self.held,
            )
            self._works()
        elif not self.held and outage is not None:
            self._unreachable = None
            outage.answered.set()
