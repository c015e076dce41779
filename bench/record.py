"""Recording one scenario's figures into the committed results, alone.

The round-two scenarios (backlog under restarts, contact events, polling policies, fleet) are
long and run one at a time (`python -m bench.<scenario>`), so each records its own part: its
figures under `scenarios.<name>` in bench/results.json, its section of bench/RESULTS.md between
markers, its plots under bench/plots/. A lock file keeps two scenarios finishing at the same time
from losing each other's figures. The first-round scenarios keep their own full-run writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_JSON = BENCH_DIR / "results.json"
RESULTS_MD = BENCH_DIR / "RESULTS.md"
PLOTS_DIR = BENCH_DIR / "plots"


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    with (BENCH_DIR / ".results.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def record(name: str, figures: Mapping[str, Any], markdown: str) -> None:
    """Store `figures` as `scenarios.<name>` and `markdown` as that scenario's section."""
    stamped = {**figures, "recorded_at": datetime.now(UTC).isoformat(timespec="seconds")}
    with _locked():
        data = json.loads(RESULTS_JSON.read_text(encoding="utf-8"))
        data.setdefault("scenarios", {})[name] = stamped
        RESULTS_JSON.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        text = RESULTS_MD.read_text(encoding="utf-8")
        section = f"{start}\n{markdown.strip()}\n{end}"
        if start in text and end in text:
            before, rest = text.split(start, 1)
            text = before + section + rest.split(end, 1)[1]
        else:
            text = text.rstrip() + "\n\n" + section + "\n"
        RESULTS_MD.write_text(text, encoding="utf-8")


def plot_path(name: str) -> Path:
    """Where a plot named `name` (e.g. `backlog-drain`) goes: bench/plots/<name>.png."""
    PLOTS_DIR.mkdir(exist_ok=True)
    return PLOTS_DIR / f"{name}.png"
