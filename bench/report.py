"""The results: bench/results.json (every figure) and bench/RESULTS.md (the tables), rendered from
the JSON alone so that `python -m bench.report RESULTS_JSON` can redo the Markdown after the notes
in `bench/notes.py` change, without rerunning anything."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import notes


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN or infinity: those become null, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def write_json(results: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(finite_or_none(results), indent=2, sort_keys=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


# -- formatting ------------------------------------------------------------------------------


def num(value: Any, digits: int = 1, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value:,.{digits}f}{unit}"


def pct(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100 * value:.{digits}f} %"


def times(value: Any) -> str:
    """A ratio: '0.25x'."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.2f}x"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _note(text: str, name: str) -> str:
    return text.strip() or notes.PENDING.format(name=name)


def _verdict(target: Mapping[str, Any]) -> str:
    return "**pass**" if target.get("pass") else "**FAIL**"


# -- sections ---------------------------------------------------------------------------------


def quota_section(q: Mapping[str, Any]) -> str:
    t = q["targets"]
    rows = [
        [
            "StartWebRTCContact rate achieved, share of the quota",
            pct(q["quota_efficiency"]),
            "≥ 95 %",
            _verdict(t["quota_efficiency"]),
        ],
        [
            "requests failed (request.failed, or no final event)",
            num(q["failed_requests"]),
            "0",
            _verdict(t["failed_requests"]),
        ],
        [
            "StartWebRTCContact 429s (share of calls)",
            f"{num(q['start_throttled'])} of {num(q['start_calls'])} "
            f"({pct(q['start_throttled_fraction'], 2)})",
            "< 1 %",
            _verdict(t["start_throttled_fraction"]),
        ],
        ["contacts started", num(q["starts"]), "", ""],
        [
            "first to last contact creation",
            num(q["start_window_s"], 1, " s"),
            f"ideal {num((q['starts'] - q['quota_burst']) / q['quota_rate'], 1, ' s')}",
            "",
        ],
        [
            "average start rate (raw, burst included)",
            num(q["achieved_start_rate"], 3, "/s"),
            "",
            "",
        ],
        [
            "end to end: worker start to last final event",
            f"{num(q['wall_s'], 1, ' s')} ({num(q['wall_requests_per_s'], 2, ' requests/s')})",
            "",
            "",
        ],
    ]
    finals = ", ".join(f"{k} {v}" for k, v in sorted(q["finals"].items()))
    return "\n\n".join(
        [
            "## 1. Quota efficiency",
            f"{q['requests']} call requests through SQS (moto, own process) and the real daemon "
            "path (`open_worker(Settings(...))`, every setting at its default except the "
            "endpoints and a 1 s long poll), against the emulator with Connect's default quotas "
            f"(StartWebRTCContact {q['quota_rate']:g}/s, burst {q['quota_burst']:g}), no "
            "concurrent-call cap and agents that connect at once, so that the start quota is "
            "the only bottleneck.",
            table(["figure", "value", "target", ""], rows),
            "**Definition.** A token bucket of rate *r* that starts full with *b* tokens allows at "
            "most *b + r·T* calls in a window of *T* seconds. With *S* successful starts and *T* "
            "the time from the first to the last contact's `CreatedAt` (emulator ground truth), "
            "the share of the quota achieved is **(S - b) / (r·T)**: 100 % for a client that "
            "spends every token the moment it exists. The client keeps "
            "`connect.rate_headroom` = 3 % under the quota by design, so its ceiling is 97 %. "
            "429s are the emulator's `throttled` count for StartWebRTCContact; failed requests "
            "count `request.failed` final events and requests left without a final event.",
            f"Final events: {finals}.",
        ]
    )


_IMPL_NAMES = {"ours": "contact-orchestrator", "round_robin": "round-robin", "naive": "naive"}


def _detection_row(name: str, d: Mapping[str, Any]) -> list[str]:
    delay = d["detection_delay_s"]
    return [
        _IMPL_NAMES.get(name, name),
        num(delay["p50"], 1, " s"),
        num(delay["p95"], 1, " s"),
        num(delay["p99"], 1, " s"),
        num(delay["mean"], 1, " s"),
        num(d["describe_calls_per_contact"]["mean"], 1),
        num(d["describe_attempts_per_contact"], 1),
        f"{num(d['describe_throttled'])} ({pct(d['describe_throttled_fraction'])})",
        f"{num(d['undetected'])} / {num(d['never_connected'])}",
    ]


_DETECTION_HEADER = [
    "implementation",
    "detection p50",
    "p95",
    "p99",
    "mean",
    "DescribeContact per contact (answered)",
    "(attempted)",
    "429s",
    "undetected / never connected",
]


def detection_section(d: Mapping[str, Any]) -> str:
    o = d["options"]
    impls = [i for i in ("ours", "round_robin", "naive") if i in d]
    rows = [_detection_row(name, d[name]) for name in impls]
    parts = [
        "## 2. Detection under a shared budget",
        f"{o['contacts']:,} contacts started at once (StartWebRTCContact and StartScreenSharing "
        f"quotas raised to {o['other_quotas'][0]:g}/s in the emulator and in the client) wait in "
        f"the emulator's contact-center model: one FIFO queue, {o['agents']} agents, handle time "
        f"uniform {o['handle_time_s'][0]:g}-{o['handle_time_s'][1]:g} s, patience "
        f"{o['patience_s']:g} s (nobody hangs up). The first {o['agents']} contacts get an agent "
        "at once; the others as agents free up, oldest first, the last after about "
        f"{o['drain_estimate_s']:.0f} s. DescribeContact keeps Connect's default quota "
        f"({o['describe_quota'][0]:g}/s, burst {o['describe_quota'][1]:g}) in the emulator "
        "and in every client budget. Each implementation runs against its own emulator "
        "(same seed, same model), the three at the same time. Ours is the real `Worker` and "
        "`LifecycleEngine` with every watch setting at its default (queue-aware polling "
        "included), fed through `orchestrator.testing.memory_queue.MemoryQueue`: moto's SQS "
        "server hands out 1,000 messages too slowly (about a minute) for the contacts to start "
        "at once.",
        "Detection delay = `ScreenSharingStartedAt - ConnectedToAgentAt` per contact (emulator "
        "ground truth): the time from the agent connecting to screen sharing starting. "
        "*Answered* DescribeContact calls are the emulator's per-contact count; *attempted* "
        "include the throttled ones. *Undetected*: an agent connected but screen sharing never "
        "started (the call ended first, or the implementation gave up).",
        table(_DETECTION_HEADER, rows),
    ]
    phase_rows = []
    for name in impls:
        phases = d[name].get("detection_by_phase") or {}
        if not phases:
            continue
        first, queued = phases["first_wave_s"], phases["queued_s"]
        phase_rows.append(
            [
                _IMPL_NAMES.get(name, name),
                f"{num(first['p50'], 1)} / {num(first['p95'], 1)} / {num(first['p99'], 1)} s",
                f"{num(queued['p50'], 1)} / {num(queued['p95'], 1)} / {num(queued['p99'], 1)} s",
            ]
        )
    if phase_rows:
        first_count = d[impls[0]]["detection_by_phase"]["first_wave_s"]["count"]
        queued_count = d[impls[0]]["detection_by_phase"]["queued_s"]["count"]
        parts.append(
            "By phase: the *first wave* are the contacts every free agent takes at once (within "
            f"{o['handle_time_s'][0]:g} s, the shortest handle time, of the first start; "
            f"{num(first_count)} contacts for {_IMPL_NAMES[impls[0]]}): nothing can detect them "
            "faster than the budget allows polls, one per contact. The *queued* contacts "
            f"({num(queued_count)}) connect one by one, oldest first, as agents free up: there "
            "the choice of whom to poll matters."
        )
        parts.append(
            table(
                ["implementation", "first wave p50 / p95 / p99", "queued p50 / p95 / p99"],
                phase_rows,
            )
        )
    if "ours" in d and "round_robin" in d:
        r = d["ratios"]["round_robin"]
        parts.append(
            table(
                ["ours / round-robin", "p50", "p95", "p99", "mean", "DescribeContact per contact"],
                [
                    [
                        "all contacts (below 1: ours is better)",
                        times(r["detection_p50"]),
                        times(r["detection_p95"]),
                        times(r["detection_p99"]),
                        times(r["detection_mean"]),
                        times(r["describe_calls_per_contact"]),
                    ],
                    [
                        "first wave",
                        times(r.get("first_wave_p50")),
                        times(r.get("first_wave_p95")),
                        times(r.get("first_wave_p99")),
                        "",
                        "",
                    ],
                    [
                        "queued",
                        times(r.get("queued_p50")),
                        times(r.get("queued_p95")),
                        times(r.get("queued_p99")),
                        "",
                        "",
                    ],
                ],
            )
        )
    parts.append(
        f"Round-robin in theory: a contact that connects at a random moment waits half a cycle, "
        f"N / (2 x rate) = {o['contacts']:,} / (2 x {o['describe_quota'][0]:g}) = "
        f"**{num(d['round_robin_theory_mean_s'], 0, ' s')}** for the initial N (the ring "
        "shrinks as contacts are served, so later contacts wait less)."
        + (
            f" Measured mean: {num(d['round_robin']['detection_delay_s']['mean'], 1, ' s')}."
            if "round_robin" in d
            else ""
        )
    )
    parts += [
        "### What the FIFO queue model implies for polling",
        _note(notes.FIFO_POLICY_NOTE, "FIFO_POLICY_NOTE"),
    ]
    return "\n\n".join(parts)


def _scale_row(name: str, s: Mapping[str, Any]) -> list[str]:
    lag = s["process"].get("loop_lag_ms", {}).get("p99")
    return [
        _IMPL_NAMES.get(name, name),
        f"{num(s['completed'])} / {num(s['contacts'])}",
        num(s["peak_rss_mib"], 0, " MiB"),
        num(s["rss_per_contact_kib"], 1, " KiB"),
        num(s["cpu_ms_per_lifecycle"], 2, " ms"),
        num(s["lifecycles_per_cpu_s"], 0, "/s"),
        num(s["lifecycles_per_wall_s"], 0, "/s"),
        num(lag, 1, " ms") if lag is not None else "n/a",
        num(s["describe_polls_per_s"], 0, "/s"),
        pct(s["emulator_cpu_utilisation"], 0),
        num(s["detection"]["detection_delay_s"]["p99"], 1, " s"),
    ]


_SCALE_HEADER = [
    "implementation",
    "completed",
    "peak RSS",
    "RSS per contact",
    "CPU per lifecycle",
    "lifecycles per CPU second",
    "lifecycles per wall second",
    "event-loop lag p99",
    "DescribeContact polls/s",
    "emulator CPU (one core)",
    "detection p99",
]


def scale_section(s: Mapping[str, Any]) -> str:
    o = s["options"]
    ours = s["ours"]
    rows = [_scale_row("ours", ours)]
    return "\n\n".join(
        [
            "## 3. Scale",
            f"{o['contacts']:,} contacts watched at once by ONE worker process: the real `Worker` "
            "and `LifecycleEngine` assembled as `open_worker` does, but fed through "
            "`orchestrator.testing.memory_queue.MemoryQueue` instead of SQS (the local SQS server "
            "is too slow to be the thing measured). Quotas raised in the emulator and in the "
            "client "
            "budget "
            f"(StartWebRTCContact {o['start_rate']:g}/s, "
            f"DescribeContact {o['describe_rate']:g}/s), "
            f"agents connect after uniform {o['agent_delay_s'][0]:g}-{o['agent_delay_s'][1]:g} s, "
            "so every contact is watched at the same time, on the production schedule (first "
            "poll after 2 s, x1.5 up to 10 s). Structured JSON logs at INFO go to a file, as in "
            "production.",
            table(_SCALE_HEADER[:-1], [row[:-1] for row in rows]),
            _scale_detection(ours, o),
            f"Peak concurrently watched contacts: {num(ours['process']['peak_watched'])}. "
            f"Wall time from enqueueing to the last final event: {num(ours['wall_s'], 1, ' s')}. "
            f"CPU: {num(ours['cpu_s'], 1, ' s')} for the whole run (process time of the worker "
            "process). RSS per contact = (peak RSS - RSS before enqueueing) / contacts. Event-loop "
            "lag: a task sleeping 50 ms in a loop records how late it wakes up. Emulator CPU: "
            "its own process's CPU time over the run, as a share of one core (it is not the "
            "bottleneck while well under 100 %).",
        ]
    )


def _scale_detection(s: Mapping[str, Any], options: Mapping[str, Any]) -> str:
    wait_low, wait_high = options["agent_delay_s"]
    det = s["detection"]
    delay = det["detection_delay_s"]
    polls = det["describe_calls_per_contact"]["mean"]
    poll = s["process"].get("poll_detection_delay_s", {})
    return (
        f"Detection at this scale: p50 {num(delay['p50'], 1, ' s')}, p95 "
        f"{num(delay['p95'], 1, ' s')}, p99 {num(delay['p99'], 1, ' s')} from the agent "
        f"connecting to screen sharing (the worker's own histogram puts the poll that noticed "
        f"it {num(poll.get('mean'), 1, ' s')} after the connection on average), with "
        f"{num(polls, 1)} DescribeContact calls per contact. The schedule alone (first poll "
        "after 2 s, then x1.5 up to 10 s, jittered) polls a contact that waits "
        f"{wait_low:g}-{wait_high:g} s about {_scheduled_polls((wait_low + wait_high) / 2):.0f} "
        "times and notices its agent within 10 s: fewer polls and later detection mean the "
        "worker could not keep the schedule."
    )


def _scheduled_polls(wait_s: float) -> float:
    """Polls the default watch schedule makes for a contact that waits `wait_s` (the one that
    sees the agent included), with the mean jitter factor."""
    elapsed, delay, polls = 0.0, 2.0, 0
    while elapsed <= wait_s:
        elapsed += delay * 0.875
        delay = min(10.0, delay * 1.5)
        polls += 1
    return float(polls)


def naive_section(results: Mapping[str, Any]) -> str:
    parts = [
        "## 4. Against what users write instead",
        "`bench/naive.py`, in the style of AWS's public samples: one boto3 Connect client with "
        "boto3's default configuration (legacy retry mode: up to 5 attempts with randomised "
        "exponential backoff on 429s and 5xx; 10 pooled connections) shared by one thread per "
        "contact; each thread calls StartWebRTCContact, then DescribeContact every 2 s, with no "
        "shared budget, until `AgentInfo.ConnectedToAgentTimestamp` (then one "
        "StartScreenSharing) or `DisconnectTimestamp` appears; every exception is caught and "
        "logged and polling goes on. It runs in its own process, against its own emulator.",
    ]
    det = results.get("detection", {})
    if "naive" in det and "ours" in det:
        r = det["ratios"]["naive"]
        ours, naive = det["ours"], det["naive"]
        parts += [
            f"### On scenario 2 ({det['options']['contacts']:,} contacts, "
            f"DescribeContact {det['options']['describe_quota'][0]:g}/s)",
            table(
                _DETECTION_HEADER, [_detection_row("ours", ours), _detection_row("naive", naive)]
            ),
            table(
                ["ours / naive", "p50", "p95", "p99", "DescribeContact per contact", "429s"],
                [
                    [
                        "ratio",
                        times(r["detection_p50"]),
                        times(r["detection_p95"]),
                        times(r["detection_p99"]),
                        times(r["describe_calls_per_contact"]),
                        f"{num(ours['describe_throttled'])} vs {num(naive['describe_throttled'])}",
                    ]
                ],
            ),
        ]
    sc = results.get("scale", {})
    if "naive" in sc:
        ours, naive = sc["ours"], sc["naive"]
        parts += [
            f"### On scenario 3 ({num(naive['contacts'])} threads; ours at "
            f"{num(ours['contacts'])} contacts)",
            table(_SCALE_HEADER, [_scale_row("ours", ours), _scale_row("naive", naive)]),
            table(
                ["ours / naive", "RSS per contact", "CPU per lifecycle", "detection p99"],
                [
                    [
                        "ratio",
                        times(_div(ours["rss_per_contact_kib"], naive["rss_per_contact_kib"])),
                        times(_div(ours["cpu_ms_per_lifecycle"], naive["cpu_ms_per_lifecycle"])),
                        times(
                            _div(
                                ours["detection"]["detection_delay_s"]["p99"],
                                naive["detection"]["detection_delay_s"]["p99"],
                            )
                        ),
                    ]
                ],
            ),
            f"Naive size: {sc['options'].get('naive_reason', '')}",
        ]
    return "\n\n".join(parts)


def _div(a: Any, b: Any) -> float:
    if not isinstance(a, int | float) or not isinstance(b, int | float) or b == 0:
        return math.nan
    return float(a) / float(b)


def render_markdown(results: Mapping[str, Any]) -> str:
    m = results["machine"]
    load = results.get("load_average") or {}
    command = f"python -m bench {results['argv']}".strip()
    c = results["commit"]
    dirty = " (with uncommitted changes)" if c.get("dirty") else ""
    head = [
        "# Benchmark results",
        f"Generated {results['generated_at']} by `{command}`"
        + f" in {num(results['suite_wall_s'], 0, ' s')}, on commit `{c['short']}`{dirty}."
        + (
            " **Quick run: sizes too small for the figures to mean anything.**"
            if results["quick"]
            else ""
        ),
        table(
            ["machine", ""],
            [
                ["CPU", f"{m['cpu_model']}, {m['cores']} cores"],
                ["memory", num(m.get("memory_gib"), 1, " GiB")],
                ["Python", m["python"]],
                ["OS", m["os"]],
                [
                    "load average (1 min) at start / end",
                    f"{num(load.get('start'), 2)} / {num(load.get('end'), 2)}",
                ],
            ],
        ),
        "## How to reproduce",
        "```sh\n"
        "make bench          # the full suite (several minutes); writes bench/RESULTS.md and "
        "bench/results.json\n"
        "make bench-quick    # the same scenarios, small (under a minute); writes to "
        "bench/.runs/quick/\n"
        "python -m bench --help                       # every size and model option\n"
        "python -m bench --only detection --detect-contacts 500 --out /tmp/b\n"
        "python -m bench.report bench/results.json    # re-render this file after editing "
        "bench/notes.py\n"
        "```",
        "Every peer runs in its own process: the Connect emulator (`orchestrator emulator`, one "
        "per implementation and scenario, seeded) and moto's SQS server, so the figures count "
        "only the client's CPU and memory. Every process's logs are kept (`logs/` next to the "
        "results; `bench/.runs/logs/` for a full run).",
    ]
    scenarios = results["scenarios"]
    body: list[str] = []
    sections = [
        ("quota", "## 1. Quota efficiency", quota_section),
        ("detection", "## 2. Detection under a shared budget", detection_section),
        ("scale", "## 3. Scale", scale_section),
    ]
    for key, heading, render in sections:
        if key not in scenarios:
            continue
        if "error" in scenarios[key]:
            body.append(f"{heading}\n\n**The scenario failed:** `{scenarios[key]['error']}`")
        else:
            body.append(render(scenarios[key]))
    if "naive" in scenarios.get("detection", {}) or "naive" in scenarios.get("scale", {}):
        body.append(naive_section(scenarios))
    tail = ["## What limits these figures", _note(notes.LIMITS_NOTE, "LIMITS_NOTE")]
    return "\n\n".join(head + body + tail) + "\n"


def summary_tables(results: Mapping[str, Any]) -> str:
    """The tables alone, for stdout."""
    text = render_markdown(results)
    keep: list[str] = []
    for block in text.split("\n\n"):
        if block.startswith(("|", "## ", "### ")):
            keep.append(block)
    return "\n\n".join(keep)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report", description="Re-render RESULTS.md from results.json."
    )
    parser.add_argument("results", type=Path, help="a results.json written by python -m bench")
    parser.add_argument("--markdown", type=Path, help="default: RESULTS.md next to the JSON")
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text(encoding="utf-8"))
    out = args.markdown or args.results.with_name("RESULTS.md")
    out.write_text(render_markdown(results), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
