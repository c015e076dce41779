"""A circuit breaker around Redis, and what the worker says while it is open.

Closed: every call goes to Redis. After `breaker_failures` consecutive failures it opens: calls
skip Redis (the fleet runs on local fallbacks) until `breaker_reset_s` has passed, then one probe
may try (half-open); its success closes the breaker, its failure opens it again for another
`breaker_reset_s`.

Opening logs `fleet.degraded` (with the reason), sets `fleet_degraded` to 1 and marks the fleet
degraded on the readiness board (the worker stays ready); closing again logs `fleet.recovered`.
"""

from __future__ import annotations

import structlog
from redis.exceptions import RedisError

from orchestrator.clock import Clock, SystemClock
from orchestrator.daemon.fleet.policy import FleetPolicy
from orchestrator.daemon.readiness import ReadinessBoard
from orchestrator.metrics import Metrics

log = structlog.get_logger("orchestrator.daemon.fleet")

PART = "fleet"
#: What a failing Redis raises (connection refused, timeouts, resets, protocol errors).
REDIS_ERRORS = (RedisError, OSError, TimeoutError)


class Breaker:
    """Tracks Redis's health; `allow()` before a call, then `succeeded()` or `failed(error)`."""

    def __init__(
        self,
        policy: FleetPolicy,
        *,
        metrics: Metrics,
        readiness: ReadinessBoard | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._threshold = policy.breaker_failures
        self.reset_s = policy.breaker_reset_s
        self._metrics = metrics
        self._readiness = readiness
        self._clock = clock or SystemClock()
        self._consecutive = 0
        self._opened_at: float | None = None
        #: When the breaker last opened or let a probe through (a probe that never reports,
        #: cancelled say, does not block the next one).
        self._last_try = 0.0
        self._metrics.fleet_degraded.set(0)
        if readiness is not None:
            readiness.ok(PART)

    @property
    def open(self) -> bool:
        """True while the fleet runs on its local fallbacks."""
        return self._opened_at is not None

    def allow(self) -> bool:
        """May a call go to Redis now? While open, one probe per `breaker_reset_s`."""
        if self._opened_at is None:
            return True
        now = self._clock.monotonic()
        if now - self._last_try < self.reset_s:
            return False
        self._last_try = now
        return True

    def succeeded(self) -> None:
        self._consecutive = 0
        if self._opened_at is not None:
            self._opened_at = None
            self._metrics.fleet_degraded.set(0)
            if self._readiness is not None:
                self._readiness.ok(PART)
            log.info("fleet.recovered")

    def failed(self, error: BaseException) -> None:
        self._consecutive += 1
        reason = f"redis unreachable: {type(error).__name__}"
        if self._opened_at is not None:
            # A failed probe: stay open for another period.
            self._last_try = self._clock.monotonic()
            return
        if self._consecutive >= self._threshold:
            self._opened_at = self._last_try = self._clock.monotonic()
            self._metrics.fleet_degraded.set(1)
            if self._readiness is not None:
                self._readiness.degrade(PART, reason)
            log.warning("fleet.degraded", reason=reason, error=str(error)[:200])
