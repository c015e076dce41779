"""What each part of the daemon says about its readiness, read by `/readyz`.

Parts that can make the worker unable to do its job without crashing it (a deployment fault
seen by the lifecycle, the contact-events queue, the fleet's Redis) report here instead of
ending requests. A report is an immutable value replaced whole, so the observability thread
reads a consistent one without a lock. The worker's own state (`WorkerStatus`, read by
`/healthz` and `/readyz`) is published the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Report:
    """One part's state. `ok=False` makes `/readyz` fail with `reason`; `degraded` only says
    that the part runs on a fallback (the worker still works, `/readyz` stays ready)."""

    ok: bool = True
    reason: str | None = None
    degraded: bool = False


class ReadinessBoard:
    """The latest report of each named part (`queue`, `contact_events`, `fleet`, ...)."""

    def __init__(self) -> None:
        self._reports: Mapping[str, Report] = MappingProxyType({})

    def report(self, part: str, report: Report) -> None:
        self._reports = MappingProxyType({**self._reports, part: report})

    def ok(self, part: str) -> None:
        self.report(part, Report())

    def fail(self, part: str, reason: str) -> None:
        self.report(part, Report(ok=False, reason=reason))

    def degrade(self, part: str, reason: str) -> None:
        self.report(part, Report(ok=True, reason=reason, degraded=True))

    def snapshot(self) -> Mapping[str, Report]:
        return self._reports

    @property
    def ready(self) -> bool:
        return all(report.ok for report in self._reports.values())

    def part_ok(self, part: str) -> bool:
        """Whether `part` has not reported a failure (unreported counts as ok)."""
        report = self._reports.get(part)
        return report is None or report.ok

    def working(self, part: str, *, besides: str) -> bool:
        """Whether `part` reported ok and every other part but `besides` is ok: what a loop
        that must not run for a worker that is not working asks (the contact-events consumer
        asks for the request queue, besides itself)."""
        report = self._reports.get(part)
        return (
            report is not None
            and report.ok
            and all(r.ok for name, r in self._reports.items() if name != besides)
        )


@dataclass(frozen=True)
class WorkerStatus:
    """What `/healthz` and `/readyz` read, from another thread: replaced whole, never mutated."""

    running: bool = False
    stopping: bool = False
    receiving: bool = False
    #: True while admission holds the receive loop back on purpose (busy, not stalled).
    paused: bool = False
    #: Consecutive failed receives (0 when the queue answers).
    receive_failures: int = 0
    #: Monotonic time the receive loop last made progress (or was idle by design).
    last_progress: float = 0.0
