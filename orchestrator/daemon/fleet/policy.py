"""Fleet mode's settings as one value, and its policies as pure functions of what was seen.

`FleetPolicy` declares the heartbeat and breaker defaults and bounds once (`[fleet]` settings read
them, see `orchestrator.bounds`); `FleetSize` is how large a fleet the local share divides by;
`local_rate` is that share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.bounds import check_bounds, described


@dataclass(frozen=True)
class FleetPolicy:
    """How a worker keeps its membership of the fleet and falls back when Redis fails."""

    heartbeat_interval_s: float = field(
        default=2.0, metadata=described("How often each worker renews its heartbeat.", gt=0)
    )
    heartbeat_ttl_s: float = field(
        default=10.0,
        metadata=described(
            "A worker whose heartbeat was not renewed for this long is gone (longer than "
            "heartbeat_interval_s).",
            gt=0,
        ),
    )
    breaker_failures: int = field(
        default=3,
        metadata=described(
            "After this many consecutive Redis failures the worker spends a local share of the "
            "quotas (quota / workers last seen, at least min_workers); it goes back to the shared "
            "budget by itself when Redis answers.",
            ge=1,
            le=100,
        ),
    )
    breaker_reset_s: float = field(
        default=3.0,
        metadata=described("While Redis fails, probe it again this often (seconds).", gt=0),
    )
    min_workers: int = field(
        default=1,
        metadata=described(
            "While Redis is unreachable each worker spends quota / max(workers last seen, this).",
            ge=1,
            le=10_000,
        ),
    )

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.heartbeat_ttl_s <= self.heartbeat_interval_s:
            raise ValueError("heartbeat_ttl_s must be longer than heartbeat_interval_s")

    @property
    def handover_s(self) -> float:
        """How long a worker back on the shared budget after an outage still keeps its local
        pace: every other worker finds Redis back within one `breaker_reset_s` of this one (its
        next probe); twice that leaves room for a probe that was slow."""
        return 2 * self.breaker_reset_s


def local_rate(rate: float, workers: int) -> float:
    """One worker's share of the fleet's `rate` while Redis is unreachable."""
    return rate / max(1, workers)


class FleetSize:
    """The fleet size a worker divides the quota by, from the live counts its heartbeats read.

    The largest count read within one heartbeat TTL: workers beat at their own moments, so a
    count just after some of them joined the set, or just after Redis came back empty, is low
    until every worker has beaten once. An outage does not age what was known: when Redis answers
    again, the size last known counts as seen at that moment, so it holds for one more TTL while
    the (empty) set fills up again. Never below `min_workers`. Times are the caller's monotonic
    seconds.
    """

    def __init__(self, ttl_s: float, min_workers: int = 1) -> None:
        self._ttl_s = ttl_s
        self._min = max(1, min_workers)
        self._seen: list[tuple[float, int]] = []
        self._lost = False
        self.value = self._min

    def lost(self) -> None:
        """Redis did not answer: what is known is kept, however long this lasts."""
        self._lost = True

    def seen(self, now: float, count: int) -> int:
        """A heartbeat read `count` live workers at `now`: the size to divide by."""
        if self._lost:
            self._seen = [(now, self.value)]
            self._lost = False
        self._seen = [(t, n) for t, n in self._seen if now - t < self._ttl_s]
        self._seen.append((now, max(1, count)))
        self.value = max(self._min, *(n for _, n in self._seen))
        return self.value
