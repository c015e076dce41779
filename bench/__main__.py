"""`python -m bench`: run the benchmark scenarios, print the tables, write the results.

A full run (no `--quick`, every scenario) writes bench/RESULTS.md and bench/results.json; any
other run writes under bench/.runs/ (git-ignored) unless `--out` says where, so that quick runs
and the smoke test never touch the committed results.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from orchestrator.testing.emulator.config import parse_range

from . import detection, quota, report, scale
from .common import isolate_environment
from .context import RunContext, say
from .measure import git_commit, machine

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SCENARIOS = ("quota", "detection", "scale")

QUICK_QUOTA = quota.QuotaOptions(requests=16)
QUICK_DETECTION = detection.DetectionOptions(contacts=40, agents=20, handle_time_s=(4.0, 6.0))
QUICK_SCALE = scale.ScaleOptions(
    contacts=1000, agent_delay_s=(4.0, 6.0), talk_time_s=(20.0, 30.0), naive_threads=300
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of contact-orchestrator against the Connect emulator.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, under a minute in total (figures only prove the suite runs)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="directory for RESULTS.md, results.json and logs/ (default: bench/ for a full run, "
        "bench/.runs/quick or bench/.runs/partial otherwise)",
    )
    p.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)"
    )
    p.add_argument("--no-naive", action="store_true", help="skip the naive implementation")
    p.add_argument("--seed", type=int, default=20261121, help="seed of every emulator and worker")

    q = p.add_argument_group("scenario 1: quota efficiency")
    q.add_argument("--quota-requests", type=int, help="requests (default 300, quick 16)")

    d = p.add_argument_group("scenario 2: detection under a shared budget")
    d.add_argument("--detect-contacts", type=int, help="contacts waiting at once (1000, quick 40)")
    d.add_argument("--detect-agents", type=int, help="agents in the FIFO model (450, quick 20)")
    d.add_argument(
        "--detect-handle-time",
        type=parse_range,
        metavar="MIN:MAX",
        help="seconds an agent spends per call (80:120, quick 4:6); keep MIN above the "
        "round-robin cycle (contacts / 10 s) or calls end before they are noticed",
    )

    s = p.add_argument_group("scenario 3: scale")
    s.add_argument(
        "--scale-contacts", type=int, help="contacts watched at once (10000, quick 1000)"
    )
    s.add_argument(
        "--scale-agent-delay",
        type=parse_range,
        metavar="MIN:MAX",
        help=(
            "seconds before an agent connects (100:130: long enough that all 10,000 are "
            "watched at once; quick 4:6)"
        ),
    )
    s.add_argument(
        "--naive-threads",
        type=int,
        help="threads of the naive run of scenario 3 (default: as many as --scale-contacts; "
        "quick 300)",
    )
    return p


def options(
    args: argparse.Namespace,
) -> tuple[quota.QuotaOptions, detection.DetectionOptions, scale.ScaleOptions]:
    qo = QUICK_QUOTA if args.quick else quota.QuotaOptions()
    do = QUICK_DETECTION if args.quick else detection.DetectionOptions()
    so = QUICK_SCALE if args.quick else scale.ScaleOptions()
    if args.quota_requests:
        qo = replace(qo, requests=args.quota_requests)
    if args.detect_contacts:
        do = replace(do, contacts=args.detect_contacts)
    if args.detect_agents:
        do = replace(do, agents=args.detect_agents)
    if args.detect_handle_time:
        do = replace(do, handle_time_s=args.detect_handle_time)
    if args.scale_contacts:
        so = replace(so, contacts=args.scale_contacts)
    if args.scale_agent_delay:
        so = replace(so, agent_delay_s=args.scale_agent_delay)
    if args.naive_threads:
        so = replace(so, naive_threads=args.naive_threads)
    if args.no_naive:
        do = replace(do, naive=False)
        so = replace(so, naive=False)
    return qo, do, so


def output_dir(args: argparse.Namespace) -> Path:
    if args.out is not None:
        out: Path = args.out
        return out.resolve()
    if args.quick:
        return BENCH_DIR / ".runs" / "quick"
    if args.only and set(args.only) != set(SCENARIOS):
        return BENCH_DIR / ".runs" / "partial"
    return BENCH_DIR


def logs_dir(out: Path) -> Path:
    # The committed bench/ directory keeps only the results; its logs go to bench/.runs/.
    return BENCH_DIR / ".runs" / "logs" if out == BENCH_DIR else out / "logs"


async def run_all(args: argparse.Namespace, ctx: RunContext) -> dict[str, Any]:
    qo, do, so = options(args)
    chosen = args.only or list(SCENARIOS)
    runs: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
        "quota": lambda: quota.run(qo, ctx),
        "detection": lambda: detection.run(do, ctx),
        "scale": lambda: scale.run(so, ctx),
    }
    scenarios: dict[str, Any] = {}
    for name in SCENARIOS:
        if name not in chosen:
            continue
        try:
            scenarios[name] = await runs[name]()
        except Exception as exc:  # one broken scenario must not lose the others' figures
            traceback.print_exc()
            say(f"      scenario {name} FAILED: {exc!r}")
            scenarios[name] = {"error": repr(exc)}
    return scenarios


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(raw)
    isolate_environment()
    out = output_dir(args)
    ctx = RunContext(logs=logs_dir(out), seed=args.seed)
    commit = git_commit(REPO)
    say(
        f"contact-orchestrator benchmarks{' (quick)' if args.quick else ''} on commit "
        f"{commit['short']}{' + changes' if commit['dirty'] else ''}; results to {out}, "
        f"logs to {ctx.logs}"
    )
    started = time.monotonic()
    load_start = os.getloadavg()[0]
    scenarios = anyio.run(run_all, args, ctx)
    suite_wall = time.monotonic() - started
    qe = scenarios.get("quota", {}).get("quota_efficiency")  # None when not run
    results: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "argv": shlex.join(raw),
        "quick": args.quick,
        "commit": commit,
        "machine": machine(),
        "suite_wall_s": suite_wall,
        # Other work on the machine shares its cores with the benchmark: say how busy it was.
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "quota_efficiency": qe,
        "scenarios": scenarios,
    }
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(results, out / "results.json")
    markdown = report.render_markdown(report.finite_or_none(results))
    (out / "RESULTS.md").write_text(markdown, encoding="utf-8")
    say("\n" + report.summary_tables(report.finite_or_none(results)))
    say(f"\nSuite took {suite_wall:.0f} s. Wrote {out / 'RESULTS.md'} and {out / 'results.json'}.")
    failed = [name for name, figures in scenarios.items() if "error" in figures]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
