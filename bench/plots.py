"""Plots drawn from the recorded figures alone (bench/results.json), without running anything.

```
python -m bench.plots    # bench/plots/detection-policies.png from scenarios.detection
```
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .record import RESULTS_JSON, plot_path

#: (key under scenarios.detection, label), in the order drawn.
POLICIES = (("ours", "ours"), ("round_robin", "round robin"), ("naive", "naive"))
PERCENTILES = ("p50", "p95", "p99")


def detection_policies(results: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """Detection delay percentiles per polling policy, from results.json's
    `scenarios.detection` (KeyError when that scenario was never recorded)."""
    detection = results["scenarios"]["detection"]
    return {
        key: {p: float(detection[key]["detection_delay_s"][p]) for p in PERCENTILES}
        | {
            "count": float(detection[key]["detection_delay_s"]["count"]),
            "contacts": float(detection[key].get("contacts", math.nan)),
        }
        for key, _ in POLICIES
    }


def plot_detection_policies(results_path: Path = RESULTS_JSON, out: Path | None = None) -> Path:
    """Grouped bars of the detection delay's p50/p95/p99 for ours, round robin and naive."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    results = json.loads(results_path.read_text(encoding="utf-8"))
    figures = detection_policies(results)
    out = out or plot_path("detection-policies")
    width = 0.8 / len(PERCENTILES)
    fig, axes = plt.subplots(figsize=(8, 4.8))
    for i, pct in enumerate(PERCENTILES):
        xs = [j + (i - 1) * width for j in range(len(POLICIES))]
        values = [figures[key][pct] for key, _ in POLICIES]
        bars = axes.bar(xs, values, width, label=pct)
        axes.bar_label(bars, labels=[f"{v:.1f}" for v in values], fontsize=8, padding=2)
    labels = []
    for key, name in POLICIES:
        detected, contacts = figures[key]["count"], figures[key]["contacts"]
        missed = math.isfinite(contacts) and detected < contacts
        labels.append(name + (f"\n({detected:.0f} of {contacts:.0f} detected)" if missed else ""))
    axes.set_xticks(range(len(POLICIES)), labels)
    axes.set_ylabel("detection delay (s): screen sharing started - agent connected")
    options = results["scenarios"]["detection"].get("options", {})
    axes.set_title(
        f"Detection delay by polling policy ({options.get('contacts', '?')} contacts, "
        f"{options.get('agents', '?')} agents)",
        fontsize=10,
    )
    axes.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.plots", description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS_JSON)
    args = parser.parse_args(argv)
    print(plot_detection_policies(args.results), flush=True)


if __name__ == "__main__":
    main()
