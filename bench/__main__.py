"""`python -m bench [SCENARIO ...]`: run benchmark scenarios (all of them by default), print their
figures and record each one in results.json and RESULTS.md, leaving the other scenarios' sections
as they were.

A full run (no `--quick`, `--only` or `--set`) records into bench/; any other run into
bench/.runs/quick/ or bench/.runs/partial/ (git-ignored) unless `--out` says where, so that quick
runs and the smoke tests never touch the committed results. A scenario that fails records nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio

from . import (
    backlog,
    client,
    detection,
    events,
    fleet,
    fleet_outage,
    orphans,
    outage,
    polling,
    positions,
    quota,
    scale,
    tracing,
)
from .harness import (
    BENCH_DIR,
    RunContext,
    Scenario,
    isolate_environment,
    override,
    parse_setting,
    say,
)
from .measure import machine
from .results import git_commit, record, render

#: In the order they run and appear in RESULTS.md.
SCENARIOS: tuple[Scenario, ...] = tuple(
    m.SCENARIO
    for m in (
        quota,
        detection,
        scale,
        events,
        backlog,
        polling,
        fleet,
        fleet_outage,
        outage,
        positions,
        orphans,
        client,
        tracing,
    )
)
BY_NAME = {s.name: s for s in SCENARIOS}


def build_parser() -> argparse.ArgumentParser:
    listing = "\n".join(
        f"  {s.name:<10} {s.title}"
        + (f" (variants: {', '.join(s.variants)})" if s.variants else "")
        for s in SCENARIOS
    )
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of contact-orchestrator against the Connect emulator.",
        epilog=f"scenarios:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="default: every scenario")
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, a minute or two a scenario (figures only prove the suite runs)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="VARIANT",
        help="run only this variant of the scenarios that have it (repeatable): a partial run",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        type=parse_setting,
        metavar="OPTION=VALUE",
        help="change an option of the scenarios that have it, the value read as JSON "
        "(e.g. requests=50, center.contacts=500, handle_time_s=[4,6]; repeatable)",
    )
    p.add_argument("--seed", type=int, help="seed of every emulator and worker (default: each "
                   "scenario's own)")  # fmt: skip
    p.add_argument(
        "--out",
        type=Path,
        help="directory of results.json, RESULTS.md, plots/ and logs/ (default: bench/ for a "
        "full run, bench/.runs/quick or bench/.runs/partial otherwise)",
    )
    p.add_argument(
        "--render",
        action="store_true",
        help="run nothing: re-render RESULTS.md from the results.json there (after editing "
        "bench/notes/)",
    )
    return p


def output_dir(args: argparse.Namespace) -> Path:
    if args.out is not None:
        return Path(args.out).resolve()
    if args.quick:
        return BENCH_DIR / ".runs" / "quick"
    if args.only or args.set:
        return BENCH_DIR / ".runs" / "partial"
    return BENCH_DIR


def options_of(scenario: Scenario, args: argparse.Namespace) -> Any:
    """The scenario's options (quick or full) with every `--set` it has."""
    options = scenario.quick if args.quick else scenario.options
    for key, value in args.set:
        if accepts(options, key, value):
            options = override(options, key, value)
    return options


def accepts(options: Any, key: str, value: Any) -> bool:
    try:
        override(options, key, value)
    except ValueError:
        return False
    return True


def chosen(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Scenario]:
    if unknown := [n for n in args.scenarios if n not in BY_NAME]:
        parser.error(f"no scenario {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    picked = [s for s in SCENARIOS if not args.scenarios or s.name in args.scenarios]
    names = ", ".join(s.name for s in picked)
    variants = {v for s in picked for v in s.variants}
    if stray := [v for v in args.only if v not in variants]:
        parser.error(f"--only {', '.join(stray)}: no such variant of {names}")
    for key, value in args.set:
        if not any(accepts(s.options, key, value) for s in picked):
            parser.error(f"--set {key}: no such option of {names}")
    return picked


def show_targets(targets: Mapping[str, Any], prefix: str = "") -> None:
    for name, target in targets.items():
        if "pass" not in target:
            show_targets(target, f"{prefix}{name}.")
            continue
        value = (
            f": {target['value']} {target['op']} {target['threshold']}" if "op" in target else ""
        )
        say(f"  target {prefix}{name}{value}: {'met' if target['pass'] else 'MISSED'}")


def run_one(scenario: Scenario, args: argparse.Namespace, out: Path, argv: Sequence[str]) -> bool:
    """Run one scenario and record it: whether it succeeded."""
    only = frozenset(v for v in args.only if v in scenario.variants)
    logs = (BENCH_DIR / ".runs" / "logs" if out == BENCH_DIR else out / "logs") / scenario.name
    seed = scenario.seed if args.seed is None else args.seed
    ctx = RunContext(logs, out / "plots", seed, quick=args.quick, only=only)
    say(f"\n== {scenario.name}: {scenario.title}{' (quick)' if args.quick else ''}; logs in {logs}")
    began, load_start = time.monotonic(), os.getloadavg()[0]
    try:
        figures = anyio.run(scenario.run, options_of(scenario, args), ctx)
    except Exception as exc:  # the other scenarios still run, and this one's record stays
        traceback.print_exc()
        say(f"  scenario {scenario.name} FAILED: {exc!r}; nothing recorded")
        return False
    if scenario.plot is not None and not only:
        try:
            scenario.plot(figures, ctx.plot(scenario.plot_name))
        except Exception:  # the figures are recorded all the same
            traceback.print_exc()
            say(f"  {scenario.name}: the plot FAILED")
    show_targets(figures.get("targets", {}))
    run = {
        "argv": shlex.join(argv), "quick": args.quick, "only": sorted(only), "set": dict(args.set),
        "wall_s": time.monotonic() - began,
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
    }  # fmt: skip
    recorded = {k: v for k, v in figures.items() if k not in scenario.unrecorded}
    record(out, {scenario.name: recorded}, run, machine(), SCENARIOS)
    say(f"  {scenario.name} took {run['wall_s']:.0f} s; recorded in {out / 'results.json'}")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(raw)
    scenarios = chosen(args, parser)
    out = output_dir(args)
    if args.render:
        data = json.loads((out / "results.json").read_text(encoding="utf-8"))
        (out / "RESULTS.md").write_text(render(data, SCENARIOS), encoding="utf-8")
        say(f"wrote {out / 'RESULTS.md'}")
        return 0
    isolate_environment()
    commit = git_commit()
    say(
        f"contact-orchestrator benchmarks ({', '.join(s.name for s in scenarios)})"
        f"{' quick' if args.quick else ''} on commit {commit['short']}"
        f"{' + changes' if commit['dirty'] else ''}; results to {out}"
    )
    failed = [s.name for s in scenarios if not run_one(s, args, out, raw)]
    if failed:
        say(f"\nFAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
