"""Per-account, per-operation request quotas, enforced the way Connect does: a token bucket."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.connect.operations import Quota


@dataclass
class _Bucket:
    quota: Quota
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.quota.burst, self.tokens + elapsed * self.quota.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class QuotaTable:
    """One token bucket per (account, operation), created full on first use."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def allow(self, account: str, operation: str, quota: Quota | None) -> bool:
        """Take one token; False means the call must be throttled. `None` means no quota."""
        if quota is None:
            return True
        key = (account, operation)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None or bucket.quota != quota:
            bucket = _Bucket(quota=quota, tokens=quota.burst, updated=now)
            self._buckets[key] = bucket
        return bucket.take(now)

    def reset(self) -> None:
        self._buckets.clear()
