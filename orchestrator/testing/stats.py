"""Summaries of measured values, the same for tests, the demo and the benchmarks.

```python
percentile([1.0, 2.0, 3.0, 4.0], 0.5)   # 2.5
distribution(delays)["p95"]
```
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["distribution", "percentile"]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation between the closest ranks; NaN for no
    values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def distribution(values: Sequence[float]) -> dict[str, float]:
    """count, mean, p50, p95, p99, max (NaN where there are no values)."""
    return {
        "count": len(values),
        "mean": sum(values) / len(values) if values else math.nan,
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else math.nan,
    }
