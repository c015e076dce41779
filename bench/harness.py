"""The harness every scenario shares: a scenario is its options (full and quick), its measurement,
its targets and how it is shown; the harness runs it, checks the targets and formats the figures.

```python
SCENARIO = Scenario("quota", "quota efficiency", QuotaOptions(), QuotaOptions(requests=16),
                    measure, markdown, seed=7, targets={"x": Target("x", ">=", 0.95)})
```

Every peer runs in its own process (the testing kit's `orchestrator.testing.processes`), with the
fake credentials of `FAKE_AWS_ENV` only (`isolate_environment`, before anything starts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import operator
import os
import sys
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from orchestrator.testing import processes
from orchestrator.testing.processes import RESULT_PREFIX
from orchestrator.testing.requests import REGION, customer_document

BENCH_DIR = Path(__file__).resolve().parent
K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

#: Fake credentials for the local servers, which accept any signature. Set in this process and its
#: children so that nothing can reach a real AWS account.
FAKE_AWS_ENV: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "AKIABENCH00000000000",
    "AWS_SECRET_ACCESS_KEY": "bench-secret-not-a-real-key",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
#: {operation: (rate per second, burst)}: quotas as the emulator and the workers are given them.
Quotas = Mapping[str, tuple[float, float]]


def isolate_environment() -> None:
    """Fake credentials only, and no orchestrator settings leaking in from the environment."""
    for key in list(os.environ):
        if key.startswith("ORCHESTRATOR_") or key in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            del os.environ[key]
    os.environ.update(FAKE_AWS_ENV)


def say(text: str) -> None:
    """Progress on stdout, in step with the scenario."""
    print(text, flush=True)


# -- requests and peers --------------------------------------------------------------------------


def request_id(run: str, index: int) -> str:
    return f"bench-{run}-{index:05d}"


def request_body(run: str, index: int) -> str:
    """The SQS message body of one call request, as a requester's backend would send it."""
    return json.dumps(customer_document(request_id(run, index), index))


def request_params(index: int) -> dict[str, Any]:
    """StartWebRTCContact parameters of the `index`-th call (no ClientToken)."""
    params = customer_document(None, index)
    del params["RequestId"]
    return params


def span(low: float, high: float) -> str:
    """A MIN:MAX option value."""
    return f"{low:g}:{high:g}"


async def run_child(
    module: str,
    options: Mapping[str, Any],
    log_path: Path,
    *,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`python -m MODULE OPTIONS-AS-JSON` (a measuring child, see `child_main`) to completion:
    the JSON it printed. `env`: set in its environment on top of this process's."""
    argv = [sys.executable, "-m", module, json.dumps(options)]
    environment = None if env is None else processes.child_env(env)
    return await processes.run_child(argv, log_path, timeout_s=timeout_s, env=environment)


def child_main(measure: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """The `__main__` of a measuring child: its options as JSON in argv[1], its figures as JSON
    on stdout after RESULT_PREFIX."""
    isolate_environment()
    result = measure(json.loads(sys.argv[1]))
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# -- a scenario ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunContext:
    """Where a scenario's run writes its logs and plots, its seed, and what was asked of it."""

    logs: Path
    plots: Path
    seed: int
    quick: bool = False
    #: The scenario's variants to run (empty: all).
    only: frozenset[str] = frozenset()

    def log(self, name: str) -> Path:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self.logs / f"{name}.log"

    def plot(self, name: str) -> Path:
        self.plots.mkdir(parents=True, exist_ok=True)
        return self.plots / f"{name}.png"

    def wants(self, variant: str) -> bool:
        return not self.only or variant in self.only


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "<": operator.lt, "==": operator.eq
}  # fmt: skip


@dataclass(frozen=True)
class Target:
    """A figure (a dotted path into the scenario's figures) held to a threshold."""

    path: str
    op: str
    threshold: float

    def check(self, figures: Mapping[str, Any]) -> dict[str, Any]:
        value = dig(figures, self.path)
        number = isinstance(value, int | float) and math.isfinite(value)
        return {
            "op": self.op,
            "threshold": self.threshold,
            "target": self.threshold,
            "value": value,
            "pass": bool(number and _OPS[self.op](float(value), self.threshold)),
        }


#: A scenario's targets: by name, or grouped (e.g. by mode) under a name.
Targets = Mapping[str, "Target | Targets"]


def check_targets(figures: Mapping[str, Any], targets: Targets) -> dict[str, Any]:
    return {
        name: t.check(figures) if isinstance(t, Target) else check_targets(figures, t)
        for name, t in targets.items()
    }


def dig(data: Any, dotted: str) -> Any:
    """`data["a"]["b"]` for "a.b"; None where a key is missing."""
    for key in dotted.split("."):
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


@dataclass(frozen=True)
class Scenario:
    name: str
    #: One line: what it measures.
    title: str
    #: Its options, a frozen dataclass: the full run's and the quick run's.
    options: Any
    quick: Any
    #: The figures of one run (JSON-ready, NaN allowed).
    measure: Callable[[Any, RunContext], Awaitable[dict[str, Any]]]
    #: Its section of RESULTS.md, from its recorded figures alone.
    markdown: Callable[[Mapping[str, Any]], str]
    seed: int
    targets: Targets = field(default_factory=dict)
    #: Its plot (bench/plots/<plot_name>.png), drawn from its figures before they are recorded.
    plot: Callable[[Mapping[str, Any], Path], None] | None = None
    plot_name: str = ""
    #: What `--only` may choose (modes, implementations, combinations...).
    variants: tuple[str, ...] = ()
    #: Top-level figures kept out of results.json (what only the plot needs).
    unrecorded: tuple[str, ...] = ()
    #: A section of RESULTS.md after this one drawn from every scenario's figures.
    appendix: Callable[[Mapping[str, Any]], str] | None = None

    async def run(self, options: Any, ctx: RunContext) -> dict[str, Any]:
        figures = await self.measure(options, ctx)
        if self.targets:
            figures["targets"] = check_targets(figures, self.targets)
        return figures


def override(options: Any, dotted: str, value: Any) -> Any:
    """`options` with the field at `dotted` (e.g. "center.contacts") set to `value`, read as the
    field's type (a JSON list as a tuple, an int as a float)."""
    head, _, rest = dotted.partition(".")
    if (
        not dataclasses.is_dataclass(options)
        or isinstance(options, type)
        or head not in {f.name for f in dataclasses.fields(options)}
    ):
        raise ValueError(f"no option {dotted!r} in {type(options).__name__}")
    current = getattr(options, head)
    new = override(current, rest, value) if rest else _like(current, value)
    return dataclasses.replace(options, **{head: new})


def _like(current: Any, value: Any) -> Any:
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(_like(current[0] if current else None, v) for v in value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def parse_setting(text: str) -> tuple[str, Any]:
    """`"queue_aware=false"` -> ("queue_aware", False): the value is read as JSON when it can be."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


async def run_all(runs: Mapping[K, Callable[[], Awaitable[T]]]) -> dict[K, T]:
    """Run each at the same time: {key: what it returned}."""
    results: dict[K, T] = {}

    async def one(name: K) -> None:
        results[name] = await runs[name]()

    async with anyio.create_task_group() as tg:
        for name in runs:
            tg.start_soon(one, name)
    return {name: results[name] for name in runs}


# -- formatting ------------------------------------------------------------------------------------


@contextlib.contextmanager
def figure(path: Path, nrows: int = 1, **options: Any) -> Iterator[tuple[Any, Any]]:
    """A matplotlib figure and its axes (`nrows` panels, `options` as `plt.subplots` takes
    them), saved to `path` when the block ends."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(nrows, 1, **options)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def num(value: Any, digits: int = 1, unit: str = "") -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if not finite(value):
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value:,.{digits}f}{unit}"


def fmt(value: Any, digits: int = 2) -> str:
    """A number without thousands separators; n/a when there is none."""
    return f"{value:.{digits}f}" if finite(value) else "n/a"


def pct(value: Any, digits: int = 1, space: str = " ") -> str:
    return f"{100 * value:.{digits}f}{space}%" if finite(value) else "n/a"


def times(value: Any) -> str:
    """A ratio: '0.25x'."""
    return f"{value:.2f}x" if finite(value) else "n/a"


def ratio(ours: float, theirs: float) -> float:
    """ours / theirs, NaN when undefined."""
    if not (finite(ours) and finite(theirs)) or theirs == 0:
        return math.nan
    return ours / theirs


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(target: Mapping[str, Any]) -> str:
    return "**met**" if target.get("pass") else "**missed**"
