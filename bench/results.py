"""The one results writer: `results.json` (every figure) and `RESULTS.md` (the report, rendered from
the JSON alone) in an output directory, bench/ for a full run.

A run records only the scenarios it ran: each one's figures replace `scenarios.<name>`, stamped
with its own `recorded_at`, `commit` and `recorded_run` (argv, quick, wall time, machine load);
every other scenario's section is kept as it was. A lock keeps two runs finishing at once from
losing each other's figures. RESULTS.md is then rendered whole from the merged JSON.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .harness import BENCH_DIR, Scenario, num, table

REPO = BENCH_DIR.parent


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: those become null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def write_json(data: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(finite_or_none(data), indent=2, allow_nan=False, default=str)
    path.write_text(text + "\n", encoding="utf-8")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def git_commit() -> dict[str, Any]:
    """The commit the benchmark ran on, and whether the working tree had changes."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    sha = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"sha": sha or "unknown", "short": sha[:10] or "unknown", "dirty": dirty}


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".results.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def record(
    out: Path,
    sections: Mapping[str, Mapping[str, Any]],
    run: Mapping[str, Any],
    machine: Mapping[str, Any],
    scenarios: Sequence[Scenario],
) -> dict[str, Any]:
    """Store each of `sections` as `scenarios.<name>` of out/results.json (the others kept), with
    this run's stamp, and render out/RESULTS.md from the result."""
    commit = git_commit()
    with _locked(out):
        path = out / "results.json"
        data: dict[str, Any] = (
            json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"scenarios": {}}
        )
        for name, figures in sections.items():
            stamp = {"recorded_at": now(), "commit": commit, "recorded_run": dict(run)}
            data["scenarios"][name] = {**figures, **stamp}
        # The top level describes the last run (as it always has); each section its own.
        data.update(
            generated_at=now(), argv=run["argv"], quick=run["quick"], commit=commit,
            machine=dict(machine), suite_wall_s=run["wall_s"], load_average=run["load_average"],
            quota_efficiency=data["scenarios"].get("quota", {}).get("quota_efficiency"),
            scenarios=data.pop("scenarios"),  # last, as it always was
        )  # fmt: skip
        write_json(data, path)
        data = json.loads(path.read_text(encoding="utf-8"))
        (out / "RESULTS.md").write_text(render(data, scenarios), encoding="utf-8")
    return data


# -- RESULTS.md ------------------------------------------------------------------------------------


def render(data: Mapping[str, Any], scenarios: Sequence[Scenario]) -> str:
    """The whole report, from results.json alone."""
    m = data["machine"]
    machine = [
        ["CPU", f"{m['cpu_model']}, {m['cores']} cores"],
        ["memory", num(m.get("memory_gib"), 1, " GiB")], ["Python", m["python"]], ["OS", m["os"]],
    ]  # fmt: skip
    head = [
        "# Benchmark results",
        "Each section below was recorded on its own: its heading is followed by when, on which "
        "commit and how busy the machine was. The machine of the last run:",
        table(["machine", ""], machine),
        "## How to reproduce",
        "```sh\n"
        "make bench          # every scenario, full size (about 35 minutes); records each one\n"
        "make bench-quick    # every scenario, small; writes to bench/.runs/quick/\n"
        "python -m bench --help                     # the scenarios, their variants and options\n"
        "python -m bench events                     # one scenario: only its section changes\n"
        "python -m bench detection --only ours --set center.contacts=500   # bench/.runs/partial/\n"
        "python -m bench --render                   # re-render this file after editing "
        "bench/notes/\n"
        "```",
        "Every peer runs in its own process: the Connect emulator (`orchestrator emulator`, one "
        "per implementation and scenario, seeded) and moto's SQS server, so the figures count "
        "only the client's CPU and memory. Every process's logs are kept (`logs/` next to the "
        "results; `bench/.runs/logs/` for a full run).",
    ]
    body = []
    recorded = data["scenarios"]
    for scenario in scenarios:
        section = recorded.get(scenario.name)
        if section is not None:
            body.append(_section(scenario, section, data))
        if scenario.appendix is not None:
            body.append(scenario.appendix(recorded))
    return "\n\n".join([*head, *(b for b in body if b)]) + "\n"


def _section(scenario: Scenario, section: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    heading = f"## {scenario.name}: {scenario.title}"
    if "error" in section:
        text = f"{heading}\n\n**The scenario failed:** `{section['error']}`"
    elif section.get("recorded_run", {}).get("only"):
        text = f"{heading}\n\nA partial run (`--only`): its figures are in results.json."
    else:
        text = scenario.markdown(section).strip()
    first, _, rest = text.partition("\n")
    return f"{first}\n\n{_stamp(section, data)}\n{rest}"


def _stamp(section: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    """When, by what command, on which commit and how busy the machine was."""
    commit = section.get("commit") or data.get("commit") or {}
    run = section.get("recorded_run") or {}
    command = f"python -m bench {run.get('argv', '')}".strip()
    text = f"*Recorded {section.get('recorded_at') or data.get('generated_at')} by `{command}`"
    if "wall_s" in run:
        text += f" in {num(run['wall_s'], 0, ' s')}"
    text += f" on commit `{commit.get('short', 'unknown')}`"
    text += " (with uncommitted changes)" if commit.get("dirty") else ""
    load = run.get("load_average")
    if load:
        text += (
            f", load average {num(load.get('start'), 2)} at start, {num(load.get('end'), 2)} at end"
        )
    text += ".*"
    if run.get("quick"):
        text += " **Quick run: sizes too small for the figures to mean anything.**"
    return text


def note(name: str) -> str:
    """A note of prose for RESULTS.md, bench/notes/<name>.md (edit it, then `--render`)."""
    return (BENCH_DIR / "notes" / f"{name}.md").read_text(encoding="utf-8").strip()


def limits_note() -> str:
    return "## What limits these figures\n\n" + note("limits")
