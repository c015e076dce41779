"""The benchmark harness without running a scenario: targets, option overrides, the one results
writer (a run records its scenarios and keeps the others'), the report rendered from the JSON."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import main
from bench.center import Center
from bench.harness import Scenario, Target, check_targets, override
from bench.results import record, render
from tests.bench.quick import REPO


def test_targets_are_checked_by_path_and_grouped_as_declared() -> None:
    figures = {"a": {"share": 0.93, "dead": 0}, "b": {"share": math.nan}}
    targets = {
        mode: {"share": Target(f"{mode}.share", ">=", 0.9), "dead": Target(f"{mode}.dead", "==", 0)}
        for mode in ("a", "b")
    }

    checked = check_targets(figures, targets)

    assert checked["a"]["share"] == {
        "op": ">=", "threshold": 0.9, "target": 0.9, "value": 0.93, "pass": True
    }  # fmt: skip
    assert checked["a"]["dead"]["pass"] is True
    assert checked["b"]["share"]["pass"] is False  # NaN meets nothing
    assert checked["b"]["dead"] == {  # a figure that is missing fails its target
        "op": "==", "threshold": 0, "target": 0, "value": None, "pass": False
    }  # fmt: skip


@dataclass(frozen=True)
class Outer:
    center: Center
    requests: int = 3
    rate: float = 2.0


def test_an_option_is_overridden_by_its_dotted_path_as_its_own_type() -> None:
    options = Outer(Center(contacts=5, agents=2, handle_time_s=(1.0, 2.0), describe_rate=2.0,
                           describe_burst=3.0))  # fmt: skip

    changed = override(override(options, "center.handle_time_s", [4, 6]), "rate", 3)
    changed = override(changed, "center.contacts", 50)

    assert changed.center.handle_time_s == (4, 6)
    assert changed.center.contacts == 50 and changed.center.agents == 2
    assert changed.rate == 3.0 and isinstance(changed.rate, float)
    with pytest.raises(ValueError, match="no option 'nope' in Center"):
        override(options, "center.nope", 1)


def _scenario(name: str) -> Scenario:
    async def measure(options: Any, ctx: Any) -> dict[str, Any]:
        raise AssertionError("not run here")

    def markdown(figures: Mapping[str, Any]) -> str:
        return f"## {name} section\n\nvalue {figures['value']}"

    return Scenario(name=name, title=f"the {name} scenario", options=None, quick=None,
                    measure=measure, markdown=markdown, seed=1)  # fmt: skip


MACHINE = {"cpu_model": "test CPU", "cores": 2, "memory_gib": 1.0, "python": "3", "os": "test"}


def _run(argv: str, *, only: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"argv": argv, "quick": True, "only": list(only), "wall_s": 1.5,
            "load_average": {"start": 0.5, "end": 0.7}}  # fmt: skip


def test_a_run_records_its_scenarios_and_keeps_the_others(tmp_path: Path) -> None:
    scenarios = [_scenario("first"), _scenario("second")]

    record(tmp_path, {"first": {"value": 1}}, _run("first"), MACHINE, scenarios)
    kept = json.loads((tmp_path / "results.json").read_text())["scenarios"]["first"]
    data = record(tmp_path, {"second": {"value": float("nan")}}, _run("second"), MACHINE, scenarios)

    assert data["scenarios"]["first"] == kept
    assert kept["value"] == 1 and kept["recorded_run"]["argv"] == "first"
    assert kept["commit"]["sha"] and kept["recorded_at"]
    assert data["scenarios"]["second"]["value"] is None  # JSON has no NaN
    assert data["argv"] == "second" and data["machine"] == MACHINE
    report = (tmp_path / "RESULTS.md").read_text()
    assert report.index("## first section") < report.index("## second section")
    assert "value 1" in report and "by `python -m bench first` in 2 s" in report
    assert "Quick run" in report


def test_a_partial_run_is_recorded_but_not_drawn_as_a_section(tmp_path: Path) -> None:
    scenarios = [_scenario("first")]

    record(tmp_path, {"first": {}}, _run("first --only a", only=("a",)), MACHINE, scenarios)

    report = (tmp_path / "RESULTS.md").read_text()
    assert "## first: the first scenario" in report and "A partial run" in report


def test_the_committed_report_is_the_one_rendered_from_the_committed_results(
    tmp_path: Path,
) -> None:
    shutil.copy(REPO / "bench" / "results.json", tmp_path / "results.json")

    assert main(["--render", "--out", str(tmp_path)]) == 0

    rendered = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    assert rendered == (REPO / "bench" / "RESULTS.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["nope"], "no scenario nope"),
        (["events", "--only", "ours"], "--only ours: no such variant of events"),
        (["quota", "--set", "contacts=3"], "--set contacts: no such option of quota"),
    ],
)
def test_the_entry_point_refuses_what_no_chosen_scenario_has(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


def test_render_draws_every_recorded_scenario_in_the_suite_order() -> None:
    data = json.loads((REPO / "bench" / "results.json").read_text(encoding="utf-8"))
    from bench.__main__ import SCENARIOS  # noqa: PLC0415

    report = render(data, SCENARIOS)
    headings = [line for line in report.splitlines() if line.startswith("## ")]
    assert headings[:4] == [
        "## How to reproduce", "## 1. Quota efficiency", "## 2. Detection under a shared budget",
        "## 3. Scale",
    ]  # fmt: skip
    assert headings[-10:] == [
        "## Contact events: detection on a 2/s DescribeContact budget",
        "## Backlog under restarts",
        "## Polling only: spending the DescribeContact budget",
        "## Fleet mode: one shared budget while workers come and go",
        "## Fleet mode through a Redis outage, before and after",
        "## Connect outage: contacts waiting and requests queued while Connect does not answer",
        "## Queue positions told to waiting customers",
        "## Agents' dead calls: timed-out contacts left or stopped",
        "## The producer's client: submit -> connection data",
        "## Tracing: CPU per lifecycle",
    ]
