"""Deployment-fault mode: a fault of the deployment (access denied, an endpoint that is not
Connect, the configured default instance or flow unknown, a sink that stays down) ends no
request. The work is retried in place with a growing pause, `/readyz` fails with the reason,
and while any fault lasts the worker receives nothing new (`active`, `cleared`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import structlog

from orchestrator.clock import Clock
from orchestrator.daemon.readiness import ReadinessBoard
from orchestrator.errors import DeploymentFault, SinkError
from orchestrator.metrics import Metrics
from orchestrator.retry import backoff_s

log = structlog.get_logger("orchestrator.daemon.worker")

T = TypeVar("T")

#: The readiness board's part deployment faults report under.
DEPLOYMENT_PART = "deployment"


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
    #: The worker's stop: a fault waited out when it is set ends the wait.
    stop: anyio.Event
    #: Reason -> how many pieces of work are waiting it out.
    _faults: dict[str, int] = field(default_factory=dict, init=False)
    #: Set while no fault lasts (replaced when one begins).
    cleared: anyio.Event = field(default_factory=anyio.Event, init=False)

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
