"""Running a benchmark's quick mode as a child process and reading the figures it prints."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_quick(module: str, *args: str, timeout_s: float = 110) -> subprocess.CompletedProcess[str]:
    """`python -m <module> --quick [args]` from the repository, without ORCHESTRATOR_* variables;
    fails the test with its output's tail unless it exits 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    done = subprocess.run(
        [sys.executable, "-m", module, "--quick", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def quick_figures(module: str, timeout_s: float = 110) -> Any:
    """The JSON figures a scenario's quick mode prints as its last line."""
    return json.loads(run_quick(module, timeout_s=timeout_s).stdout.strip().splitlines()[-1])


def dig(data: Any, dotted: str) -> Any:
    """`data["a"]["b"]` for `"a.b"`, failing the test with the missing key's name."""
    for key in dotted.split("."):
        assert isinstance(data, dict) and key in data, f"missing {dotted!r} (at {key!r})"
        data = data[key]
    return data


def number(value: Any, what: str, *, finite: bool = True) -> None:
    assert isinstance(value, int | float) and not isinstance(value, bool), f"{what}: {value!r}"
    if finite:
        assert math.isfinite(value), f"{what} is not finite: {value!r}"
