"""Measuring the process and the machine: CPU time, RSS, event-loop lag (percentiles are the
testing kit's, `orchestrator.testing.stats`)."""

from __future__ import annotations

import math
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from orchestrator.metrics import Metrics
from orchestrator.testing.stats import distribution

_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_kib(path: str, name: str) -> int:
    """A `kB` line of a /proc file (VmRSS of /proc/self/status...), in KiB; 0 when unavailable."""
    try:
        lines = Path(path).read_text(encoding="ascii").splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in lines if line.startswith(name + ":")), 0)


def rss_bytes() -> int:
    """Resident set size now."""
    return _proc_kib("/proc/self/status", "VmRSS") * 1024


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (VmHWM, else ru_maxrss, which Linux gives in KiB)."""
    peak = _proc_kib("/proc/self/status", "VmHWM")
    if not peak:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process, every thread included."""
    return time.process_time()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process (from /proc/<pid>/stat); NaN if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return math.nan
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


@dataclass
class LagMonitor:
    """Sleeps `interval_s` in a loop and records how late each wake-up is (event-loop lag)."""

    interval_s: float = 0.05
    lags: list[float] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await anyio.sleep(self.interval_s)
            self.lags.append(max(0.0, time.perf_counter() - before - self.interval_s))

    def summary_ms(self) -> dict[str, float]:
        return {k: v * 1000 if k != "count" else v for k, v in distribution(self.lags).items()}


def histogram_summary(metrics: Metrics, name: str) -> dict[str, float]:
    """count, mean, and for p50/p95/p99 the upper bound of the bucket each falls in, of one of
    the worker's Prometheus histograms."""
    buckets = sorted((float(labels["le"]), v) for labels, v in metrics.samples(name + "_bucket"))
    count = metrics.value(name + "_count")
    out = {"count": count, "mean": metrics.value(name + "_sum") / count if count else math.nan}
    for q in (0.50, 0.95, 0.99):
        out[f"p{round(q * 100)}_at_most"] = next(
            (le for le, cumulative in buckets if count and cumulative >= q * count), math.nan
        )
    return out


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, Python and OS of this machine."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = _proc_kib("/proc/meminfo", "MemTotal")
    return {
        "cpu_model": model,
        "cores": os.cpu_count() or 0,
        "memory_gib": round(mem_kib / 2**20, 1) if mem_kib else None,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "executable": sys.executable,
    }
