"""Running benchmark scenarios in quick mode as a child process (`python -m bench ... --quick`),
into a directory of the test's, and reading the results it recorded there."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: How long a quick run may take: a guard against a hang, not a bound on speed (quick runs take
#: one to four minutes on an idle 2-core machine, several times that beside other tests).
QUICK_GUARD_S = 900.0
#: The pytest timeout of a test that runs one: the guard and the test's own checks.
TEST_TIMEOUT_S = QUICK_GUARD_S + 60


def run_quick(
    out: Path, *args: str, timeout_s: float = QUICK_GUARD_S
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    """`python -m bench ARGS --quick --out OUT` from the repository, without ORCHESTRATOR_*
    variables; fails the test with its output's tail unless it exits 0. Returns OUT/results.json
    and the finished process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--quick", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "results.json").read_text(encoding="utf-8")), done


def quick_figures(scenario: str, out: Path, timeout_s: float = QUICK_GUARD_S) -> Any:
    """The figures one scenario's quick run recorded."""
    results, _ = run_quick(out, scenario, timeout_s=timeout_s)
    return results["scenarios"][scenario]


def dig(data: Any, dotted: str) -> Any:
    """`data["a"]["b"]` for `"a.b"`, failing the test with the missing key's name."""
    for key in dotted.split("."):
        assert isinstance(data, dict) and key in data, f"missing {dotted!r} (at {key!r})"
        data = data[key]
    return data


def number(value: Any, what: str, *, finite: bool = True) -> None:
    """A finite number; or, unless `finite`, null too (JSON's NaN: no values to summarise)."""
    if value is None and not finite:
        return
    assert isinstance(value, int | float) and not isinstance(value, bool), f"{what}: {value!r}"
    assert math.isfinite(value), f"{what} is not finite: {value!r}"
