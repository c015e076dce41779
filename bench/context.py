"""Where a run writes its logs, and the seed every scenario derives its randomness from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunContext:
    logs: Path
    seed: int

    def log(self, name: str) -> Path:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self.logs / f"{name}.log"


def say(text: str) -> None:
    """Progress on stdout, in step with the scenario."""
    print(text, flush=True)
